"""What the tests share: synthetic stores, the CLI's error contract, the page parser, one PNG decoder, and the
browser helpers of the dashboard's end-to-end tests. Test modules import from here, never from each other."""

from __future__ import annotations

import json
import logging
import re
import struct
import subprocess
import threading
import time
import zlib
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import torch
from click.testing import CliRunner

from rnnviz.analysis.features import compute_feature
from rnnviz.cli import main
from rnnviz.model.charrnn import CharRNN, ModelConfig
from rnnviz.model.checkpoint import load_checkpoint, save_checkpoint
from rnnviz.model.vocab import Vocab
from rnnviz.recording.recorder import record
from rnnviz.store.arrays import store_from_arrays
from rnnviz.store.writer import write_store
from rnnviz.views.dashboard import create_app

LINES = [
    'He said "hello there" and left.\n',
    'She asked "why?" twice.\n',
    "<b>bold</b> & <script>alert(1)</script>\n",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaa!\n",
]


QUOTE_UNIT, NEG_UNIT = "1:c:3", "1:h:5"  # +1 / -0.5 inside quotes, -1 / +0.5 outside


def quote_text(length: int = 3000) -> str:
    block = "".join(LINES)
    return (block * (length // len(block) + 1))[:length]


def make_quote_store(path: Path, length: int = 3000, name_checkpoint: dict | None = None):
    """A synthetic 2-layer LSTM store (H = 8, every kind) with two exact quote cells; all else seeded noise."""
    rng = np.random.default_rng(0)
    text = quote_text(length)
    vocab = Vocab.from_text(text)
    T, H = len(text), 8
    inq = compute_feature("in_quote", text)
    arrays = {}
    for layer in (0, 1):
        for kind in ("h", "c", "i", "f", "g", "o"):
            a = rng.uniform(-0.3, 0.3, (T, H)).astype(np.float32)
            arrays[(layer, kind)] = 1 / (1 + np.exp(-4 * a)) if kind in "ifo" else a
    arrays[(1, "c")][:, 3] = 2 * inq - 1
    arrays[(1, "h")][:, 5] = -(2 * inq - 1) * 0.5
    logprob = np.log(rng.uniform(0.05, 1.0, T)).astype(np.float32)
    logprob[-1] = np.nan
    ids = np.stack([rng.permutation(len(vocab))[:5] for _ in range(T)]).astype(np.uint16)
    probs = np.sort(rng.dirichlet(np.ones(8), T)[:, :5], 1)[:, ::-1].astype(np.float16)
    cfg = ModelConfig(vocab_size=len(vocab), cell="lstm", layers=2, hidden=H)
    return write_store(path, text, arrays, cfg, vocab, logprob=logprob, topk=(ids, probs), checkpoint=name_checkpoint)


def quote_span(text: str, k: int) -> tuple[int, int]:
    """[a, b) of the k-th double-quoted span, opening quote included, closing quote excluded."""
    starts = [m.start() for m in re.finditer('"', text)]
    return starts[2 * k], starts[2 * k + 1]


def make_recorded_store(base, name: str = "store"):
    """``base/name``: a store recorded from a saved random 2×16 LSTM (``base/ckpt``), so that its
    checkpoint is reachable and the sampling panel works."""
    torch.manual_seed(0)
    text = quote_text(600)
    vocab = Vocab.from_text(text)
    model = CharRNN(ModelConfig(vocab_size=len(vocab), cell="lstm", layers=2, hidden=16), vocab).eval()
    save_checkpoint(model, base / "ckpt")
    record(load_checkpoint(base / "ckpt"), text, base / name, kinds="all", exact=True)
    return base / name


TOKEN_WORDS = ("the", "cat", "sat", "on", "a", "mat", "she", "said", "and", "left", ".")
LAYER_TABLE = {"class": "WordLM", "layers": [{"layer": 0, "module": "encoder.rnn", "type": "LSTM", "proj_size": 6},
                                             {"layer": 1, "module": "decoder.rnn", "type": "LSTM", "proj_size": 0}]}


def quoted_words(n: int = 1500, seed: int = 0) -> tuple[list[str], np.ndarray]:
    """``n`` seeded words, some runs of them quoted ('"the', 'cat"', or '"mat"' alone), and (n,) 1 for each
    word of a quote (its quote marks included), else 0."""
    rng = np.random.default_rng(seed)
    words: list[str] = []
    inq: list[int] = []
    while len(words) < n:
        plain = [str(w) for w in rng.choice(TOKEN_WORDS, rng.integers(15, 30))]
        quote = [str(w) for w in rng.choice(TOKEN_WORDS[:-1], rng.integers(5, 9))]
        quote[0] = '"' + quote[0]
        quote[-1] += '"'
        words += plain + quote
        inq += [0] * len(plain) + [1] * len(quote)
    return words[:n], np.array(inq[:n], np.float32)


def make_token_store(path: Path, n: int = 1500, external: bool = False):
    """A token store of :func:`quoted_words` joined by spaces (no predictions, no checkpoint): a word-level
    LSTM's layer table (layer 0's h 6 wide, a projection), :data:`QUOTE_UNIT` +1 on every quoted word and -1
    elsewhere, :data:`NEG_UNIT` -0.5 / +0.5; all else seeded noise. ``external``: kinds "delta" and "y"
    (cell "external"), the planted unit then 1:delta:3."""
    rng = np.random.default_rng(1)
    words, inq = quoted_words(n)
    kinds = ("delta", "y") if external else ("h", "c")
    arrays = {f"{l}:{k}": rng.uniform(-0.3, 0.3, (n, 6 if (l, k) == (0, "h") else 8)).astype(np.float32)
              for l in (0, 1) for k in kinds}
    arrays[f"1:{kinds[1]}"][:, 3] = 2 * inq - 1
    arrays[f"1:{kinds[0]}"][:, 5] = -(2 * inq - 1) * 0.5
    return store_from_arrays(words, arrays, out=path, source=LAYER_TABLE)


ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts" / "dashboard"


def new_page(browser, request, width: int = 1280, height: int = 800):
    """A fresh page (30 s per action: the first after a cold start can take 15 s on a busy 2-core machine) and the
    list its console errors go to."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    pg = browser.new_page(viewport={"width": width, "height": height})
    pg.set_default_timeout(30_000)
    errors = []
    pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    pg.on("pageerror", lambda e: errors.append(str(e)))
    return pg, errors


def checked_page(browser, request, width: int = 1280, height: int = 800):
    """For a ``page`` fixture: yields a fresh page; after the test a full-page screenshot in test-artifacts/dashboard,
    and a failure if the console logged an error."""
    pg, errors = new_page(browser, request, width, height)
    yield pg
    pg.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
    pg.close()
    assert errors == []


def serve(paths):
    """Serve create_app(paths) on a free loopback port from a thread; yields (base URL, StoreSet)."""
    from werkzeug.serving import make_server

    app = create_app(paths)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = make_server("127.0.0.1", 0, app.server, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", app.stores
    server.shutdown()
    thread.join(5)


def open_view(page, base: str, query: str, drawn: str):
    """Load ``base/query`` and wait until the text window ``drawn`` ("start:stop") is on the page."""
    from playwright.sync_api import expect

    page.goto(base + "/" + query)
    expect(page.locator("#text")).to_have_attribute("data-drawn", drawn)


def spans(page):
    return page.locator("#text > span")


def pixel(locator) -> tuple[int, int, int]:
    """RGB at the middle of an element's screenshot."""
    img = decode_png(locator.screenshot())
    return tuple(int(c) for c in img[img.shape[0] // 2, img.shape[1] // 2, :3])


def hex_rgb(c: str) -> tuple[int, int, int]:
    return tuple(int(c[k : k + 2], 16) for k in (1, 3, 5))


def decode_png(data: bytes) -> np.ndarray:
    """8-bit RGB/RGBA non-interlaced PNG (what Chromium writes) -> (H, W, 3) uint8: every PNG row filter
    (None/Sub/Up/Avg/Paeth). The tests' one PNG reader (no image library)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat = 8, []
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + n]
        pos += 12 + n
        if kind == b"IHDR":
            w, h, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
    assert depth == 8 and ctype in (2, 6) and interlace == 0
    bpp = 3 if ctype == 2 else 4
    stride = w * bpp
    raw = zlib.decompress(b"".join(idat))
    img = np.zeros((h, stride), np.uint8)
    prev = np.zeros(stride, np.int64)
    for y in range(h):
        f = raw[y * (stride + 1)]
        line = np.frombuffer(raw, np.uint8, stride, y * (stride + 1) + 1).astype(np.int64)
        if f == 1:
            line = np.cumsum(line.reshape(w, bpp), axis=0).reshape(-1) & 255
        elif f == 2:
            line = (line + prev) & 255
        elif f in (3, 4):
            cur, up = line.tolist(), prev.tolist()
            for i in range(stride):
                a = cur[i - bpp] if i >= bpp else 0
                if f == 3:
                    pred = (a + up[i]) >> 1
                else:
                    b, c = up[i], (up[i - bpp] if i >= bpp else 0)
                    p = a + b - c
                    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                    pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                cur[i] = (cur[i] + pred) & 255
            line = np.array(cur, np.int64)
        img[y] = line
        prev = line
    return img.reshape(h, w, bpp)[:, :, :3]


SMALL_TEXT = 'He said "hi" (twice).\nif (x) { y; }\n'


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def one_line_error(r, *needles: str, after_progress: bool = False) -> None:
    """The CLI's contract for bad input: exit 1, one `Error: ...` line, no traceback. ``after_progress``:
    a progress bar was drawn (and, on a terminal, erased) before the input was found bad."""
    assert r.exit_code == 1, r.output
    lines = re.split(r"[\r\n]+", r.output.strip())  # a progress bar redraws its line with \r
    assert lines[-1].startswith("Error: ") and (after_progress or len(lines) == 1), r.output
    assert "Traceback" not in r.output
    for n in needles:
        assert n in r.output, r.output


# --- processes: what a child left running ---


def children(pid: int) -> set[int]:
    """Every descendant process of ``pid`` (from /proc)."""
    out, todo = set(), [pid]
    while todo:
        p = todo.pop()
        for task in Path(f"/proc/{p}/task").glob("*"):
            try:
                kids = {int(x) for x in (task / "children").read_text().split()}
            except OSError:
                continue
            todo.extend(kids - out)
            out |= kids
    return out


def alive(pid: int) -> bool:
    """``pid`` is running (a zombie, dead but not yet reaped, is not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def wait_for(cond, timeout: float = 120, proc: subprocess.Popen | None = None) -> None:
    """Poll ``cond()`` until it holds; fails after ``timeout`` seconds, or as soon as ``proc`` has exited."""
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        assert proc is None or proc.poll() is None, proc.communicate()
        time.sleep(0.05)


def small_store(path: Path, text: str = SMALL_TEXT, values=None):
    rng = np.random.default_rng(0)
    T = len(text)
    arrays = {(0, k): rng.uniform(-1, 1, (T, 4)) if values is None else values for k in ("h", "c")}
    logprob = -rng.uniform(0, 3, T).astype(np.float32)
    logprob[-1] = np.nan
    vocab = Vocab.from_text(text)
    cfg = ModelConfig(vocab_size=len(vocab), cell="lstm", layers=1, hidden=4)
    return write_store(path, text, arrays, cfg, vocab, logprob=logprob)


def edit_manifest(store_dir: Path, raw_replace: tuple[str, str] | None = None, **fields) -> None:
    p = store_dir / "manifest.json"
    s = p.read_text(encoding="utf-8")
    if fields:
        m = json.loads(s)
        m.update(fields)
        s = json.dumps(m)
    if raw_replace:
        assert raw_replace[0] in s
        s = s.replace(*raw_replace)
    p.write_text(s, encoding="utf-8")


ALLOWED_TAGS = {"html", "head", "meta", "link", "title", "style", "body", "div", "h1", "h2", "p", "small",
                "section", "span", "b", "i", "script"}


VOID = {"meta", "link"}


class Page(HTMLParser):
    """Collects tags, script bodies, the header titles, and per block each character with its run."""

    def __init__(self, doc: str):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.stack: list[tuple[str, dict]] = []
        self.scripts: list[tuple[dict, str]] = []
        self.blocks: dict[int, list[tuple[str, str | None, int]]] = {}  # b -> [(data, run class, chunk start)]
        self.titles: list[str] = []
        self.feed(doc)
        self.close()

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append((tag, a))
        if tag not in VOID:
            self.stack.append((tag, a))

    def handle_endtag(self, tag):
        assert self.stack and self.stack[-1][0] == tag, f"</{tag}> closes {self.stack[-1:]}"
        self.stack.pop()

    def handle_data(self, data):
        tags = [t for t, _ in self.stack]
        if tags and tags[-1] == "script":
            self.scripts.append((self.stack[-1][1], data))
        elif tags and tags[-1] == "p" and self.stack[-1][1].get("class") == "ti":
            self.titles.append(data)
        elif "div" in tags:
            x = [a for t, a in self.stack if t == "div" and a.get("class") == "x"]
            if x:
                assert tags[-1] == "i" and self.stack[-2][1].get("class") == "p", "text outside a run"
                chunk = int(self.stack[-2][1]["data-s"])
                self.blocks.setdefault(int(x[0]["data-b"]), []).append((data, self.stack[-1][1].get("class"), chunk))

    def text(self, b: int) -> str:
        return "".join(d for d, _, _ in self.blocks[b])

    def data(self) -> dict:
        (body,) = [s for a, s in self.scripts if a.get("type") == "application/json"]
        return json.loads(body)


def boxes(page, selector: str) -> list[dict]:
    """The bounding box (x, y, w, h) and text (t) of each element that ``selector`` matches."""
    return page.evaluate(
        f"Array.from(document.querySelectorAll({selector!r})).map(e => {{"
        "const r = e.getBoundingClientRect(); return {x: r.x, y: r.y, w: r.width, h: r.height, t: e.textContent};})"
    )


def overlap(a: dict, b: dict) -> bool:
    return (a["x"] < b["x"] + b["w"] and b["x"] < a["x"] + a["w"]
            and a["y"] < b["y"] + b["h"] and b["y"] < a["y"] + a["h"])


def assert_no_overlaps(page, graph: str):
    """No two of a Plotly graph's titles, annotations, axis titles and legend overlap."""
    parts = boxes(page, f"{graph} .gtitle, {graph} .annotation-text, {graph} .xtitle, {graph} .ytitle, "
                        f"{graph} .legend .bg")
    parts = [p for p in parts if p["w"] and p["h"]]
    assert len(parts) >= 3
    for j, p in enumerate(parts):
        for q in parts[j + 1 :]:
            assert not overlap(p, q), (p, q)


LONG_QUOTE = 'They wrote "a long quoted sentence that runs on well past the width of a panel, on and on to its end".\n'
OV_A, OV_QUOTE, OV_RAMP = "0:c:1", "0:c:2", "0:c:3"  # an "a" detector, a two-state quote cell, a slow ramp
OV_STEP, OV_RISE = "1:c:3", "1:h:5"  # in quotes: a step (-1 / +1), and a rise from 0.2 to 1 over each quote


def overview_text(length: int) -> str:
    block = "".join(LINES) + LONG_QUOTE
    return (block * (length // len(block) + 1))[:length]


def make_overview_store(path: Path, length: int = 6000):
    """Two layers of h and c, 8 units each (LSTM), over :func:`overview_text`: seeded noise except the planted
    units :data:`OV_A`, :data:`OV_QUOTE`, :data:`OV_RAMP` (a ramp over every 500 characters), :data:`OV_STEP`
    and :data:`OV_RISE`."""
    rng = np.random.default_rng(0)
    text = overview_text(length)
    vocab = Vocab.from_text(text)
    arrays = {(l, k): rng.uniform(-0.3, 0.3, (length, 8)).astype(np.float32) for l in (0, 1) for k in "hc"}
    inq = compute_feature("in_quote", text)
    c = arrays[(0, "c")]
    c[:, 1] = np.frombuffer(text.encode(), np.uint8) == ord("a")
    c[:, 2] = 2 * inq - 1 + rng.uniform(-0.05, 0.05, length)
    c[:, 3] = (np.arange(length) % 500) / 250 - 1
    arrays[(1, "c")][:, 3] = 2 * inq - 1
    rise = np.full(length, -1.0, np.float32)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], inq, [0]])))  # each quote's [start, stop)
    for a, b in zip(edges[::2], edges[1::2], strict=True):
        rise[a:b] = np.linspace(0.2, 1.0, b - a)
    arrays[(1, "h")][:, 5] = rise
    cfg = ModelConfig(vocab_size=len(vocab), cell="lstm", layers=2, hidden=8)
    return write_store(path, text, arrays, cfg, vocab)
