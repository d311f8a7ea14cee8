"""The exported page in the system Chromium: colours read back from screenshot pixels, hover tooltips,
literal text, no script injection, no network, no console errors. Screenshots go to test-artifacts/."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from helpers import decode_png

from rnnviz.model.charrnn import ModelConfig
from rnnviz.model.vocab import Vocab
from rnnviz.store.writer import write_store
from rnnviz.views.export import colour_scale, export_html

pytestmark = pytest.mark.e2e

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"

TEXT = (
    "First Citizen:\n"
    "<script>window.__pwned = 1</script> & &amp; </span> \"q\" 'q'\r\n"
    "<img src=x onerror=\"window.__pwned = 2\"> </script><!--\n"
    "\tTabbed\t\tline   three spaces\n"
    "Carriage\rreturn, NUL\0here, emoji 😀 and é.\n"
    "Speak, speak, they said, all of them together right now.\n"
)
MAX_AT, MIN_AT = TEXT.index("Speak"), TEXT.index("Tabbed")  # planted +1 (red) and -1 (blue)
RUN = (TEXT.index("they"), TEXT.index("together"))  # one long run of equal colour
RUN_VALUE = 0.5

# [x, y, width, height] of every character of block B (code points), or of character K only: a Range
# per character over the block's text nodes, independent of how the page splits the text into runs.
CHAR_RECTS = """([b, k]) => {
  const x = document.querySelectorAll('.x')[b], out = [];
  const walk = document.createTreeWalker(x, NodeFilter.SHOW_TEXT);
  for (let n, i = 0; (n = walk.nextNode()); ) {
    for (let o = 0; o < n.length; i++) {
      const w = n.data.codePointAt(o) > 0xffff ? 2 : 1;
      if (k === null || i === k) {
        const r = document.createRange();
        r.setStart(n, o); r.setEnd(n, o + w);
        const q = r.getBoundingClientRect();
        out.push([q.x, q.y, q.width, q.height]);
        if (k !== null) return out[0];
      }
      o += w;
    }
  }
  return out;
}"""


FRAMES = "new Promise(r => requestAnimationFrame(() => requestAnimationFrame(() => r(0))))"




def vis(c: str) -> str:
    """How the tooltip shows a character: whitespace and controls as visible symbols (CR as "CR", as the
    dashboard names it: no font draws U+240D)."""
    names = {"\n": "\u21b5", " ": "\u2423", "\t": "\u21e5", "\r": "CR", "\x7f": "\u2421"}
    return names.get(c, chr(0x2400 + ord(c)) if c < " " else c)


def rgb(css: str) -> np.ndarray:
    return np.array([int(css[i : i + 2], 16) for i in (1, 3, 5)])


@pytest.fixture
def page(browser):
    pg = browser.new_page(viewport={"width": 900, "height": 1000})
    errors, requests = [], []
    pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.on("request", lambda r: requests.append(r.url))
    pg.errors, pg.requests = errors, requests
    yield pg
    pg.close()


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    rng = np.random.default_rng(7)
    T, vocab = len(TEXT), Vocab.from_text(TEXT)
    cfg = ModelConfig(vocab_size=len(vocab), cell="lstm", layers=1, hidden=2)
    h = rng.uniform(-0.95, 0.95, (T, 2))
    h[MAX_AT, 0], h[MIN_AT, 0] = 1.0, -1.0
    h[RUN[0] : RUN[1], 0] = RUN_VALUE
    arrays = {(0, "h"): h, (0, "c"): rng.uniform(-4, 4, (T, 2)), (0, "f"): rng.uniform(0, 1, (T, 2))}
    ids = np.argsort(-rng.random((T, len(vocab))), axis=1)[:, :3].astype(np.uint16)
    probs = np.sort(rng.dirichlet(np.ones(len(vocab)), T), axis=1)[:, ::-1][:, :3]
    logprob = -rng.exponential(1.0, T).astype(np.float32)
    return write_store(tmp_path_factory.mktemp("e2e") / "st", TEXT, arrays, cfg, vocab, logprob=logprob,
                       topk=(ids, probs))


def hover(pg, rect) -> str:
    x, y, w, h = rect
    pg.mouse.move(1, 1)
    pg.mouse.move(x + w / 2, y + h / 2)
    pg.wait_for_selector("#rnnviz-tip:not([hidden])", timeout=5000)
    return pg.locator("#rnnviz-tip").text_content()


def test_colours_in_screenshot_match_values(store, page, tmp_path):
    ARTIFACTS.mkdir(exist_ok=True)
    units = ["0:h:0", "0:f:1", "0:c:0"]
    out = tmp_path / "e2e.html"
    export_html(store, units, out, titles={"0:h:0": "</script><b>planted</b>"}, colour_range="max")
    page.goto(out.as_uri())
    page.screenshot(path=ARTIFACTS / "export_e2e.png", full_page=True)
    shown = TEXT.replace("\0", "\ufffd")  # NUL cannot travel in HTML; every other character is kept
    assert page.evaluate("[...document.querySelectorAll('.x')].map(x => x.textContent)") == [shown] * 3
    assert page.evaluate("window.__pwned === undefined && document.querySelectorAll('img').length === 0")
    assert page.locator(".ti").text_content() == "</script><b>planted</b>"

    for b, name in enumerate(units):
        layer, kind, idx = 0, name[2], int(name[4:])
        values = np.asarray(store.array(layer, kind)[:, idx], np.float32)
        want = colour_scale(kind, store.stats.loc[name]).colours(values)
        box = page.locator(".x").nth(b).bounding_box()
        clip = {k: round(v) for k, v in box.items()}
        img = decode_png(page.screenshot(clip=clip))
        rects = page.evaluate(CHAR_RECTS, [b, None])
        assert len(rects) == len(TEXT)
        checked = 0
        for i, (x, y, w, _h) in enumerate(rects):
            if w < 5 or ord(TEXT[i]) > 0x2000:  # newlines have no box; leave the emoji's ink out
                continue
            x0, x1 = int(np.ceil(x)) + 1 - clip["x"], int(np.floor(x + w)) - 1 - clip["x"]
            y0 = int(np.ceil(y)) - clip["y"]
            patch = img[y0 : y0 + 2, x0:x1].reshape(-1, 3)  # top rows of the character box: background
            (mode, _), = Counter(map(tuple, patch.tolist())).most_common(1)
            assert np.abs(np.array(mode) - rgb(want[i])).max() <= 3, (name, i, TEXT[i], mode, want[i])
            checked += 1
        assert checked > 0.8 * len(TEXT.replace("\n", ""))
        if b == 0:  # the planted extremes: red and blue
            for at, ch in ((MAX_AT, 0), (MIN_AT, 2)):
                x, y, w, h = rects[at]
                r = img[int(np.ceil(y)) - clip["y"], int(x + w / 2) - clip["x"]].astype(int)
                assert r[ch] - max(np.delete(r, ch)) > 80, (at, r)
    assert page.errors == []
    assert {u.split(":")[0] for u in page.requests} == {"file"} and len(page.requests) == 1


def test_hover_shows_exact_value_and_predictions(store, page, tmp_path):
    out = export_html(store, ["0:h:0", "0:c:1"], tmp_path / "e2e.html").save(tmp_path / "e2e.html")
    page.goto(out.as_uri())
    rects = page.evaluate(CHAR_RECTS, [0, None])
    tip = hover(page, rects[MAX_AT])
    lines = tip.split("\n")
    assert lines[0] == "0:h:0 = 1"
    assert lines[1].startswith(f"#{MAX_AT} 'S'  loss ")
    lp = float(store.logprob[MAX_AT - 1])
    assert float(lines[1].split("loss ")[1].split()[0]) == pytest.approx(-lp, rel=5e-3)  # 3 significant digits
    ids, probs = store.topk
    entries = lines[2].removeprefix("next: ").split("  ")
    assert [e.rsplit(" ", 1)[0] for e in entries] == [vis(store.vocab.chars[j]) for j in ids[MAX_AT]]
    for e, p in zip(entries, probs[MAX_AT].astype(float), strict=True):
        shown = e.rsplit(" ", 1)[1]
        if shown == "<1%":
            assert p < 0.0099
        else:
            assert abs(float(shown.rstrip("%")) - 100 * p) <= 0.71, (shown, p)  # 1/255 steps, whole percent
    page.screenshot(path=ARTIFACTS / "export_e2e_hover.png")

    # inside a long run: the run splits into characters without moving them, the index is exact
    k = RUN[0] + 6
    before = page.evaluate(CHAR_RECTS, [0, None])
    tip = hover(page, rects[k])
    assert tip.split("\n")[:2][0] == f"0:h:0 = {RUN_VALUE}"
    assert tip.split("\n")[1].startswith(f"#{k} '{TEXT[k]}'")
    np.testing.assert_allclose(page.evaluate(CHAR_RECTS, [0, None]), before, atol=0.1)  # (sub-pixel text measuring)
    # random characters of the second block: the value shown reads back as the stored float16
    values = np.asarray(store.array(0, "c")[:, 1])
    rects1 = page.evaluate(CHAR_RECTS, [1, None])
    for i in np.random.default_rng(0).choice([j for j, c in enumerate(TEXT) if c.isalpha()], 6, replace=False):
        first = hover(page, rects1[i]).split("\n")[0]
        assert first.startswith("0:c:1 = ")
        assert np.float16(float(first.split(" = ")[1])) == values[i], (i, first)
    assert page.errors == []


def test_long_export_hover_deep_in_the_text(tmp_path, page):
    rng = np.random.default_rng(1)
    line = "the quick brown fox jumps over the lazy dog, again and again.\n"
    text = line * 200  # 12.4k chars: 7 content-visibility chunks
    vocab = Vocab.from_text(text)
    cfg = ModelConfig(vocab_size=len(vocab), cell="gru", layers=1, hidden=1)
    z = np.clip(np.cumsum(rng.normal(0, 0.05, len(text))) % 1.0, 0, 1)
    arrays = {(0, k): z[:, None] for k in ("h", "r", "z", "n")}
    st = write_store(tmp_path / "st", text, arrays, cfg, vocab)
    out = export_html(st, ["0:z:0"]).save(tmp_path / "long.html")
    page.goto(out.as_uri())
    assert page.evaluate("document.querySelector('.x').textContent") == text
    page.evaluate("document.querySelector('.x').scrollTop = 1e9")
    page.evaluate(FRAMES)  # let the chunks that came into view be drawn
    k = len(text) - len(line) + 4  # "quick" on the last line
    tip = hover(page, page.evaluate(CHAR_RECTS, [0, k]))
    assert tip.split("\n")[1].startswith(f"#{k} 'q'")
    assert np.float16(float(tip.split("\n")[0].split(" = ")[1])) == np.float16(z[k])
    page.screenshot(path=ARTIFACTS / "export_e2e_long.png")
    assert page.errors == []
