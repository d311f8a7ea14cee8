"""The exported page of a token store (issue 25): each token's characters take the token's colour, characters
between tokens none; positions and ranges count rows (tokens); the tooltip names the token and its row.
Read back from the page's DOM, and in the system Chromium from screenshot pixels and hovers."""

from __future__ import annotations

import base64

import numpy as np
import pytest
from helpers import QUOTE_UNIT, Page, cli, decode_png, hex_rgb, make_token_store, one_line_error

from rnnviz.errors import RnnvizError
from rnnviz.views import export as ex
from rnnviz.views.colours import PALETTES, colour_scale
from rnnviz.views.display import visible_line
from rnnviz.views.export import export_html

RED, BLUE, WHITE = hex_rgb(PALETTES["diverging"][-1]), hex_rgb(PALETTES["diverging"][0]), (255, 255, 255)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_token_store(tmp_path_factory.mktemp("tok") / "tok")


def b64(s: str, dtype) -> np.ndarray:
    return np.frombuffer(base64.b64decode(s), dtype=dtype)


def per_char_bins(parsed: Page, b: int) -> list[int]:
    """Block ``b``'s colour step of each character (-1: a bare run, no colour)."""
    out = []
    for d, cls, _ in parsed.blocks[b]:
        out += [-1 if cls is None else int(cls[1:])] * len(d)
    return out


def test_each_tokens_characters_take_its_colour(store):
    page = export_html(store, [QUOTE_UNIT, "0:h:3"], start=10, length=60, colour_range="max")
    parsed, data = Page(page.html), Page(page.html).data()
    assert (page.start, page.stop, data["start"], data["stop"]) == (10, 70, 10, 70)
    a, b = int(store.spans[10, 0]), int(store.spans[69, 1])
    text = store.text[a:b]
    spans = np.asarray(store.spans[10:70]) - a
    for blk, unit in enumerate([QUOTE_UNIT, "0:h:3"]):
        assert parsed.text(blk) == text  # the tokens' text, spaces between them kept
        values = store.unit(unit)[10:70]
        np.testing.assert_array_equal(b64(data["units"][blk]["v"], "<f2"), values)  # one value per token
        bins = colour_scale(unit.split(":")[1], store.stats.loc[unit]).bins(values)
        want = [-1] * len(text)
        for (s, e), step in zip(spans.tolist(), bins.tolist(), strict=True):
            want[s:e] = [step] * (e - s)
        assert per_char_bins(parsed, blk) == want
    assert set(per_char_bins(parsed, 0)) == {-1, 0, 32}  # the planted unit: blue, red, and the spaces bare
    np.testing.assert_array_equal(b64(data["tok"]["s"], "<i4"), spans[:, 0])
    np.testing.assert_array_equal(b64(data["tok"]["e"], "<i4"), spans[:, 1])
    assert "loss" not in data and "ids" not in data  # no predictions in the store: none claimed
    src = page.html.split("<p class=src>")[1].split("</p>")[0]
    assert src == ("tokens 10–70 of 1,500 · colour = the unit's value after reading the token · hover a token for "
                   "its value")


def test_windows_count_tokens(store, monkeypatch):
    with pytest.raises(RnnvizError, match=r"^start 1500 is past the end of the store \(1,500 tokens\)$"):
        export_html(store, [QUOTE_UNIT], start=1500)
    a, b = int(store.spans[0, 0]), int(store.spans[99, 1])
    monkeypatch.setattr(ex, "MAX_CELLS", 2 * (b - a) - 1)  # the page draws characters: they are what is counted
    export_html(store, [QUOTE_UNIT], length=100)
    with pytest.raises(RnnvizError, match=rf"^2 unit\(s\) x {b - a:,} characters \(100 tokens\) is too much"):
        export_html(store, [QUOTE_UNIT, "1:h:5"], length=100)


def test_cli_export_of_a_token_store(store, tmp_path):
    out = tmp_path / "page.html"
    r = cli("export", store.path, "--unit", QUOTE_UNIT, "--out", out, "--start", 20, "--length", 30)
    assert r.exit_code == 0, r.output
    assert r.output.startswith(f"Wrote {out}: 1 unit(s) x 30 tokens (20-50), ")
    assert Page(out.read_text(encoding="utf-8")).data()["start"] == 20
    one_line_error(cli("export", store.path, "--unit", "0:h:6", "--out", out), "indices 0..5")  # h is 6 wide


def test_an_external_stores_kinds(tmp_path):
    st = make_token_store(tmp_path / "ext", n=200, external=True)
    page = export_html(st, ["1:y:3", "1:delta:0"])
    assert "<h2>1:y:3<small>external state y · layer 1 · unit 3</small></h2>" in page.html
    assert set(per_char_bins(Page(page.html), 0)) == {-1, 0, 32}  # scaled by its recorded range, as c is


# --- in Chromium ---

RUNS = "() => [...document.querySelectorAll('.x')[0].querySelectorAll('i')].map(i => i.textContent)"


def background(locator) -> tuple[int, int, int]:
    """The commonest colour of the top two pixel rows of an element (its background: the ink is lower)."""
    from collections import Counter

    img = decode_png(locator.screenshot())
    (rgb, _), = Counter(map(tuple, img[:2].reshape(-1, 3).tolist())).most_common(1)
    return tuple(int(c) for c in rgb)


@pytest.mark.e2e
def test_token_colours_and_tooltips_in_chromium(store, browser, tmp_path):
    out = export_html(store, [QUOTE_UNIT], length=40).save(tmp_path / "tok.html")
    page = browser.new_page(viewport={"width": 900, "height": 900})
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(out.as_uri())
    runs = page.evaluate(RUNS)  # one run per token (neighbours differ: a space between them), one per space
    words = [store.text[s:e] for s, e in np.asarray(store.spans[:40]).tolist()]
    assert runs == [x for w in words for x in (w, " ")][:-1]
    values = store.unit(QUOTE_UNIT)[:40]
    cells = page.locator(".x").first.locator("i")
    for k in range(0, 79, 2):  # every token's background: red inside a quote, blue outside
        assert background(cells.nth(k)) == (RED if values[k // 2] > 0 else BLUE), (k, runs[k])
    for k in (1, 31, 77):  # the spaces between tokens: no colour
        assert background(cells.nth(k)) == WHITE
    r = int(np.argmax(values > 0))  # the first quoted token
    box = cells.nth(2 * r).bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.wait_for_selector("#rnnviz-tip:not([hidden])", timeout=5000)
    assert page.locator("#rnnviz-tip").text_content() == f"{QUOTE_UNIT} = 1\n#{r} '{visible_line(words[r])}'"
    space = cells.nth(2 * r + 1 + len(words[r]) - 1)  # the run split into characters: the space after it
    assert space.text_content() == " "
    box = space.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.wait_for_selector("#rnnviz-tip[hidden]", state="attached", timeout=5000)
    page.close()
    assert errors == []
