"""HTML export: colour scales, escaping (checked by parsing the output), data round trips, CLI."""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from helpers import ALLOWED_TAGS, Page, cli

from rnnviz.cli import main
from rnnviz.errors import RnnvizError
from rnnviz.model.charrnn import ModelConfig
from rnnviz.model.vocab import Vocab
from rnnviz.store.writer import write_store
from rnnviz.views import export as ex
from rnnviz.views.export import N_BINS, ColourScale, colour_scale, colours, export_html

MID = (N_BINS - 1) // 2
# Everything that could break out of text or of the JSON, plus whitespace the parser would rewrite.
TRICKY = (
    "a <script>alert(1)</script> </span> &amp; &lt; \"dq\" 'sq' </script><!-- x -->\r\n"
    "y\rz\0w\t\tend  two  spaces 😀 é\n<img src=x onerror=alert(2)>]]></style>\n"
)


def rgb(css: str) -> tuple[int, int, int]:
    return int(css[1:3], 16), int(css[3:5], 16), int(css[5:7], 16)


def make_store(path, text, cell="lstm", hidden=4, kinds=None, seed=0, topk=5, nan_at=None, scale_c=3.0):
    """A synthetic store: uniform values in each kind's range (c in [-scale_c, scale_c])."""
    rng = np.random.default_rng(seed)
    vocab = Vocab.from_text(text)
    cfg = ModelConfig(vocab_size=len(vocab), cell=cell, layers=2, hidden=hidden)
    kinds = kinds or cfg.kinds
    T = len(text)
    arrays = {}
    for layer in (0, 1):
        for k in kinds:
            lo = -1.0 if k in ("h", "g", "n", "c") else 0.0
            a = rng.uniform(lo, 1.0, (T, hidden)) * (scale_c if k == "c" else 1.0)
            if nan_at is not None and k == "h":
                a[nan_at, 0] = np.nan
            arrays[(layer, k)] = a
    K = min(topk, len(vocab))
    ids = np.argsort(-rng.random((T, len(vocab))), axis=1)[:, :K].astype(np.uint16)
    p = np.sort(rng.dirichlet(np.ones(len(vocab)), T), axis=1)[:, ::-1][:, :K]
    logprob = -rng.exponential(1.0, T).astype(np.float32)
    logprob[-1] = np.nan
    return write_store(path, text, arrays, cfg, vocab, logprob=logprob, topk=(ids, p) if K else None)




def b64(s: str, dtype) -> np.ndarray:
    return np.frombuffer(base64.b64decode(s), dtype=dtype)


# --- colour scales ---


def test_colour_scale_by_kind():
    for k in ("h", "g", "n"):
        assert colour_scale(k) == ColourScale("diverging", -1.0, 1.0)
    for k in ("i", "f", "o", "r", "z"):
        assert colour_scale(k) == ColourScale("sequential", 0.0, 1.0)
    assert colour_scale("c", {"min": -3.0, "max": 2.0}) == ColourScale("diverging", -3.0, 3.0)
    assert colour_scale("c", {"min": -0.5, "max": 4.0}) == ColourScale("diverging", -4.0, 4.0)
    assert colour_scale("c", {"min": 0.0, "max": 0.0}) == ColourScale("diverging", -1.0, 1.0)
    with pytest.raises(RnnvizError, match="needs its recorded min and max"):
        colour_scale("c")
    with pytest.raises(RnnvizError, match="unknown unit kind 'q'"):
        colour_scale("q")


def test_bins_and_colours():
    d = colour_scale("h")
    assert d.bins([-1, 0, 1, np.nan, 7, -7, 0.5]).tolist() == [0, MID, N_BINS - 1, -1, N_BINS - 1, 0, MID + MID // 2]
    step = 2 / (N_BINS - 1)
    assert d.bins([1 - 0.4 * step, 1 - 0.6 * step, -1 + 0.4 * step]).tolist() == [N_BINS - 1, N_BINS - 2, 0]  # nearest
    lo, mid, hi, nan = d.colours([-1.0, 0.0, 1.0, np.nan])
    assert mid == "#ffffff" and nan == "transparent"
    r, g, b = rgb(hi)
    assert r - max(g, b) > 80  # red
    r, g, b = rgb(lo)
    assert b - max(r, g) > 80  # blue
    # lightness falls steadily away from 0 on both sides
    light = [sum(rgb(c)) for c in d.palette]
    assert all(x < y for x, y in zip(light[:MID], light[1 : MID + 1], strict=True))
    assert all(x > y for x, y in zip(light[MID:-1], light[MID + 1 :], strict=True))
    s = colour_scale("f")
    first, last = s.colours([0.0, 1.0])
    assert first == "#ffffff"
    r, g, b = rgb(last)
    assert g - max(r, b) > 60  # green
    assert colours([-2.0, 0.0, 2.0, 1.0], "diverging", -2, 2) == ColourScale("diverging", -2, 2).colours(
        [-2.0, 0.0, 2.0, 1.0]
    )
    assert colours([-2.0, 2.0], "diverging", -2, 2) == [d.palette[0], d.palette[-1]]
    with pytest.raises(RnnvizError, match="unknown colour scale"):
        colours([0.0], "rainbow", 0, 1)
    with pytest.raises(RnnvizError, match="needs lo < hi"):
        colours([0.0], "sequential", 1, 1)
    pl = d.plotly()
    assert len(pl) == N_BINS and pl[0] == [0.0, d.palette[0]] and pl[-1] == [1.0, d.palette[-1]]


# --- the page ---


def test_escaping_parses_to_literal_text_and_no_tags(tmp_path):
    text = TRICKY * 3
    st = make_store(tmp_path / "st", text)
    evil = "in_quote: </script><script>alert(3)</script> & <b>"
    page = export_html(st, ["0:h:0", "1:c:2"], titles={"0:h:0": evil})
    doc = page.html
    parsed = Page(doc)
    names = {t for t, _ in parsed.tags}
    assert names <= ALLOWED_TAGS, names - ALLOWED_TAGS
    assert [t for t, _ in parsed.tags].count("script") == 2
    assert not [a for _, attrs in parsed.tags for a in attrs if a.startswith("on") or a == "src"]
    shown = text.replace("\0", "\ufffd")  # the one character HTML cannot carry: NUL shows as U+FFFD
    assert parsed.text(0) == shown and parsed.text(1) == shown
    assert parsed.titles == [evil]
    (json_body,) = [s for a, s in parsed.scripts if a.get("type") == "application/json"]
    assert "<" not in json_body and ">" not in json_body and "&" not in json_body
    assert "\r" not in doc and "\0" not in doc  # a browser would fold CR into LF and drop NUL: positions shift
    assert parsed.data()["meta"]["titles"] == {"0:h:0": evil}
    # no network: nothing fetched, no CDN, no web font
    for needle in ("http:", "https:", "src=", "url(", "@import", "@font-face"):
        assert needle not in doc
    assert [a.get("href") for t, a in parsed.tags if t == "link"] == ["data:,"]


def test_runs_and_values_match_the_store(tmp_path):
    text = TRICKY * 20
    st = make_store(tmp_path / "st", text, nan_at=7)
    units = ["0:h:0", "1:c:3", "0:f:1", "1:g:2"]
    page = export_html(st, units, start=3, length=len(text) - 10, colour_range="max")
    parsed, data = Page(page.html), Page(page.html).data()
    assert (page.start, page.stop) == (3, len(text) - 7) == (data["start"], data["stop"])
    for b, name in enumerate(units):
        layer, kind, idx = (int(name[0]), name[2], int(name[4:]))
        want = np.asarray(st.array(layer, kind)[3 : len(text) - 7, idx])
        got = b64(data["units"][b]["v"], "<f2")
        np.testing.assert_array_equal(got, want)  # exact float16 values, NaN included
        bins = colour_scale(kind, st.stats.loc[name]).bins(want)
        per_char = []
        for d, cls, _ in parsed.blocks[b]:
            per_char += [-1 if cls is None else int(cls[1:])] * len(d.replace("\ufffd", "\0"))
        assert per_char == bins.tolist()
        if b == 0:
            assert per_char[7 - 3] == -1  # the NaN planted at row 7: a bare run, no colour
        prefix = {"h": "d", "c": "d", "g": "d", "f": "s"}[kind]
        assert {cls[0] for _, cls, _ in parsed.blocks[b] if cls} == {prefix}


def test_runs_merge_equal_colours(tmp_path):
    text = "ab\n" * 300
    vocab = Vocab.from_text(text)
    cfg = ModelConfig(vocab_size=len(vocab), cell="rnn", layers=1, hidden=2)
    h = np.zeros((len(text), 2))
    h[:, 1] = np.where(np.arange(len(text)) % 2 == 0, 0.9, -0.9)
    st = write_store(tmp_path / "st", text, {(0, "h"): h}, cfg, vocab)
    parsed = Page(export_html(st, ["0:h:0", "0:h:1"]).html)
    assert len(parsed.blocks[0]) == 1  # one run for a constant unit
    assert len(parsed.blocks[1]) == len(text)  # a new run at every change
    data = parsed.data()
    assert "ids" not in data  # no top-k recorded: nothing claimed in the tooltip
    assert "loss" not in data


def test_loss_and_topk_data(tmp_path):
    text = TRICKY * 5
    st = make_store(tmp_path / "st", text)
    for start in (0, 4):
        data = Page(export_html(st, ["0:o:1"], start=start, length=50).html).data()
        loss = b64(data["loss"], "<f2")
        lp = np.asarray(st.logprob, dtype=np.float32)
        want = np.array([np.nan if t == 0 else -lp[t - 1] for t in range(start, start + 50)], dtype=np.float16)
        np.testing.assert_array_equal(loss, want)
        ids, probs = st.topk
        k = data["k"]
        assert k == 5 and data["idw"] == 1 and data["vocab"] == st.vocab.chars
        np.testing.assert_array_equal(b64(data["ids"], np.uint8).reshape(50, k), ids[start : start + 50, :k])
        q = b64(data["p"], np.uint8).reshape(50, k)
        np.testing.assert_array_equal(q, np.rint(np.asarray(probs[start : start + 50, :k], np.float32) * 255))


def test_tooltip_names_whitespace_as_the_dashboard_does(tmp_path):
    # One rule (rnnviz.views.display.shown) for the page's tooltips and the dashboard's: the page's script only
    # looks characters up in the map it is sent, for the window's and the vocabulary's characters.
    st = make_store(tmp_path / "st", TRICKY + "\x7f\x01")
    data = Page(export_html(st, ["0:h:0"], length=10).html).data()
    assert data["vis"] == {"\0": "\u2400", "\x01": "\u2401", "\t": "\u21e5", "\n": "\u21b5", "\r": "CR",
                           " ": "\u2423", "\x7f": "\u2421"}
    assert "\\u21b5" not in ex._asset("export.js")  # no second symbol table in the script


def test_css_script_and_skeleton_are_package_files(tmp_path):
    from importlib import resources

    assets = resources.files("rnnviz.views") / "assets"
    css, js = (assets / "export.css").read_text("utf-8"), (assets / "export.js").read_text("utf-8")
    doc = export_html(make_store(tmp_path / "st", TRICKY), ["0:h:0"]).html
    assert doc.startswith("<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8><meta name=viewport")
    assert f"<style>{css}.rnnviz .d0{{" in doc and f"<script>{js}</script></div></body></html>\n" in doc
    tomllib = pytest.importorskip("tomllib")
    with open(Path(__file__).parent.parent / "pyproject.toml", "rb") as f:
        shipped = tomllib.load(f)["tool"]["setuptools"]["package-data"]["rnnviz.views"]
    assert {"assets/*.css", "assets/*.js", "assets/*.j2"} <= set(shipped)  # in the wheel, not only the checkout
    assert (assets / "export.html.j2").is_file()


def test_large_vocabulary_uses_16_bit_ids(tmp_path):
    text = "".join(chr(0x400 + i) for i in range(300)) * 2
    st = make_store(tmp_path / "st", text, kinds=["h"], hidden=2)
    data = Page(export_html(st, ["1:h:1"]).html).data()
    assert data["idw"] == 2
    np.testing.assert_array_equal(b64(data["ids"], "<u2").reshape(len(text), 5), st.topk[0][:, :5])


def test_chunks_end_after_newlines_and_carry_their_start(tmp_path):
    line = "x" * 59 + "\n"
    text = line * 150 + "y" * 20000  # 9,000 chars of lines, then one long line
    st = make_store(tmp_path / "st", text, kinds=["h"], hidden=1, topk=0)
    parsed = Page(export_html(st, ["0:h:0"]).html)
    chunks: dict[int, str] = {}
    for d, _, s in parsed.blocks[0]:
        chunks[s] = chunks.get(s, "") + d
    starts = sorted(chunks)
    assert len(starts) > 3
    pos = 0
    for s in starts:
        assert s == pos
        pos += len(chunks[s])
    assert pos == len(text)
    for s in starts[1:]:
        assert text[s - 1] == "\n" or s - starts[starts.index(s) - 1] == 4 * ex.CHUNK  # newline, or a long line
    assert ex._chunks("abc") == []
    # newlines at 1, 4, 7, ...: each cut follows the first newline at least 5 chars after the last cut
    assert ex._chunks("a\nb" * 10, size=5, longest=8) == [8, 14, 20, 26]
    assert ex._chunks("ab" * 10, size=5, longest=8) == [8, 16]  # no newline: cut every 8


def test_window_and_unit_errors(tmp_path):
    text = TRICKY
    st = make_store(tmp_path / "st", text, kinds=["h", "c"])
    T = len(text)
    page = export_html(st, "0:c:1", start=5, length=10**6)  # past the end stops at the end
    assert (page.start, page.stop, page.units) == (5, T, ["0:c:1"])
    cases = [
        (dict(units=[]), "no units to export"),
        (dict(units=["0:h:9"]), "unit '0:h:9' is not in this store"),
        (dict(units=["0:f:0"]), "not in this store .*kinds h,c"),
        (dict(units=["zz"]), "bad unit name 'zz'"),
        (dict(units=["0:h:0"], start=T), f"start {T} is past the end"),
        (dict(units=["0:h:0"], start=-1), "start must be >= 0"),
        (dict(units=["0:h:0"], length=0), "length must be >= 1"),
        (dict(units=["0:h:0"], start="3"), "start must be an integer"),
        (dict(units=["0:h:0", "0:h:1"], titles=["one"]), "got 1 titles for 2 units"),
    ]
    for kw, msg in cases:
        with pytest.raises(RnnvizError, match=msg):
            export_html(st, **kw)
    old = ex.MAX_CELLS
    try:
        ex.MAX_CELLS = 2 * T - 1
        with pytest.raises(RnnvizError, match="too much for one page"):
            export_html(st, ["0:h:0", "0:h:1"])
    finally:
        ex.MAX_CELLS = old
    assert Page(export_html(st, ["0:h:0", "0:h:1"], titles=["A", "B"]).html).titles == ["A", "B"]


def test_gru_kinds(tmp_path):
    st = make_store(tmp_path / "st", TRICKY, cell="gru")
    data = Page(export_html(st, ["0:r:0", "0:z:0", "0:n:0", "0:h:0"]).html)
    assert [{c[0] for _, c, _ in data.blocks[b] if c} for b in range(4)] == [{"s"}, {"s"}, {"d"}, {"d"}]


def test_repr_html_is_an_isolated_iframe_of_the_page(tmp_path):
    st = make_store(tmp_path / "st", TRICKY)
    page = export_html(st, ["0:h:0"])
    parsed = Page(page._repr_html_())
    ((tag, attrs),) = parsed.tags
    assert tag == "iframe" and attrs["srcdoc"] == page.html and attrs["sandbox"] == "allow-scripts"
    assert repr(page) == f"HtmlExport(units=['0:h:0'], start=0, stop={len(TRICKY)})"
    assert export_html(str(st.path), ["0:h:0"]).html == page.html  # a path opens the store


def test_save_is_atomic_and_reports_bad_paths(tmp_path):
    st = make_store(tmp_path / "st", TRICKY)
    out = tmp_path / "sub" / "cell.html"
    page = export_html(st, ["0:h:0"], out)
    assert out.read_bytes().decode("utf-8") == page.html
    out.write_text("old", encoding="utf-8")
    page.save(out)
    assert out.read_bytes().decode("utf-8") == page.html
    assert sorted(p.name for p in out.parent.iterdir()) == ["cell.html"]  # no temp file left behind
    (tmp_path / "adir").mkdir()
    with pytest.raises(RnnvizError, match="cannot write"):
        page.save(tmp_path / "adir")
    (tmp_path / "afile").write_text("x")
    with pytest.raises(RnnvizError, match="cannot write"):
        page.save(tmp_path / "afile" / "x.html")


# --- CLI ---


def test_cli_export(tmp_path):
    st = make_store(tmp_path / "st", TRICKY * 4)
    out = tmp_path / "o.html"
    r = CliRunner().invoke(main, ["export", str(st.path), "--unit", "0:h:1,1:c:0", "--unit", "0:i:2",
                                  "--out", str(out), "--start", "3", "--length", "40"])
    assert r.exit_code == 0, r.output
    assert f"Wrote {out}: 3 unit(s) x 40 chars (3-43)" in r.output
    parsed = Page(out.read_bytes().decode("utf-8"))
    assert parsed.data()["meta"]["units"] == ["0:h:1", "1:c:0", "0:i:2"]
    assert parsed.text(2) == (TRICKY * 4)[3:43].replace("\0", "\ufffd")

    bad = [
        ([], 1, "Error: give either --unit"),
        (["--unit", "0:h:0", "--feature", "in_quote"], 1, "Error: give either --unit"),
        (["--unit", "0:h:99"], 1, "Error: unit '0:h:99' is not in this store"),
        (["--unit", "0:h:0", "--start", "100000"], 1, "Error: start 100000 is past the end"),
    ]
    for args, code, msg in bad:
        r = CliRunner().invoke(main, ["export", str(st.path), "--out", str(tmp_path / "x.html"), *args])
        assert r.exit_code == code and msg in r.output, r.output
        assert "Traceback" not in r.output
    assert not (tmp_path / "x.html").exists()
    r = CliRunner().invoke(main, ["export", str(tmp_path / "nope"), "--unit", "0:h:0", "--out", str(out)])
    assert r.exit_code == 1 and "no such store" in r.output


def test_cli_export_feature(tmp_path):
    pytest.importorskip("rnnviz.analysis.ranking")
    from rnnviz.analysis.features import compute_feature

    text = 'He said "run, now" and left. "Stay," she said. Nobody "moved" at all.\n' * 30
    st = make_store(tmp_path / "st", text, kinds=["h", "c"], seed=3)
    quote = compute_feature("in_quote", text)
    planted = np.asarray(st.array(1, "c"), np.float32).copy()
    planted[:, 2] = 2 * quote - 1 + np.random.default_rng(0).normal(0, 0.05, len(text))
    arrays = {(l, k): np.asarray(st.array(l, k), np.float32) for l in (0, 1) for k in ("h", "c")}
    arrays[(1, "c")] = planted
    st = write_store(tmp_path / "st2", text, arrays, ModelConfig(**st.manifest["model"]), st.vocab)
    out = tmp_path / "q.html"
    r = CliRunner().invoke(main, ["export", str(st.path), "--feature", "in_quote", "--top", "2", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert r.output.splitlines()[1].split()[:2] == ["1:c:2", "in_quote:"]
    parsed = Page(out.read_bytes().decode("utf-8"))
    units = parsed.data()["meta"]["units"]
    assert len(units) == 2 and units[0] == "1:c:2"
    assert parsed.titles[0].startswith("in_quote: ") and "(sign +)" in parsed.titles[0]
    r = CliRunner().invoke(main, ["export", str(st.path), "--feature", "in_quote", "--top", "0", "--out", str(out)])
    assert r.exit_code == 1 and "Error: --top must be >= 1" in r.output


def test_titles_from_cells():
    import pandas as pd

    cells = pd.DataFrame({"feature": ["in_if", "in_if"], "unit": ["1:c:7", "0:h:3"], "metric": ["auc", "auc"],
                          "score": [0.9712, 0.5], "sign": [1, -1]})
    assert ex.titles_from_cells(cells) == {
        "1:c:7": "in_if: auc 0.971 (sign +)",
        "0:h:3": "in_if: auc 0.500 (sign \u2212)",
    }
    no_sign = cells.drop(columns="sign")
    assert ex.titles_from_cells(no_sign)["1:c:7"] == "in_if: auc 0.971"


def test_export_of_a_recorded_store(tmp_path, make_model):
    from rnnviz.recording.recorder import record

    text = TRICKY.replace("\0", "") * 2  # the fixture model's vocabulary is the text's own
    model = make_model(cell="lstm", layers=2, hidden=8, text=text, seed=1)
    st = record(model, text, tmp_path / "st", kinds="all", exact=True)
    units = ["1:c:3", "0:i:2", "1:h:0", "0:g:7"]
    parsed = Page(export_html(st, units, start=10, length=200).html)
    data = parsed.data()
    for b, name in enumerate(units):
        assert parsed.text(b) == text[10:210]
        layer, kind, idx = int(name[0]), name[2], int(name[4:])
        np.testing.assert_array_equal(b64(data["units"][b]["v"], "<f2"), st.array(layer, kind)[10:210, idx])
    loss = b64(data["loss"], "<f2").astype(np.float32)
    np.testing.assert_allclose(loss, -np.asarray(st.logprob[9:209]), rtol=1e-3)
    top1 = b64(data["ids"], np.uint8).reshape(200, data["k"])[:, 0]
    np.testing.assert_array_equal(top1, st.topk[0][10:210, 0])


def test_colour_ranges_in_the_export(tmp_path):
    text = TRICKY * 20
    st = make_store(tmp_path / "st", text)
    name = "0:h:0"
    want = np.asarray(st.array(0, "h")[:, 0], dtype=np.float64)
    lo, hi = float(st.stats.loc[name, "min"]), float(st.stats.loc[name, "max"])
    p99 = float(np.percentile(np.abs(want), 99))
    expected = {
        "max": (want + 1) / 2,
        "p99": (np.clip(want / p99, -1, 1) + 1) / 2,
        "minmax": np.where(want < 0, (want - lo) / -lo / 2, 0.5 + want / hi / 2),
    }
    for mode, t in expected.items():
        parsed = Page(export_html(st, [name], colour_range=mode).html)
        per_char = []
        for d, cls, _ in parsed.blocks[0]:
            per_char += [int(cls[1:])] * len(d.replace("\ufffd", "\0"))
        assert per_char == np.rint(t * (N_BINS - 1)).astype(int).tolist(), mode
    assert min(per_char) == 0 and max(per_char) == N_BINS - 1  # minmax: both ends used
    with pytest.raises(RnnvizError, match="unknown colour range 'rainbow'; choose one of max, p99, minmax"):
        export_html(st, [name], colour_range="rainbow")
    out = tmp_path / "x.html"
    args = ["export", str(st.path), "--unit", name, "--colour-range", "minmax", "--out", str(out)]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    assert out.read_text(encoding="utf-8") == export_html(st, [name], colour_range="minmax").html


def test_a_feature_page_opens_where_the_feature_first_holds(tmp_path):
    """`export --feature in_if` opens two lines before the first `if` (not on lines without one); a numeric
    feature, or an explicit --start, starts where asked."""
    import numpy as np

    from rnnviz.store.writer import write_store
    from rnnviz.views.export import feature_start

    text = "int a;\n" * 30 + "x = 1;\nif (a) {\n  b();\n}\n" + "int c;\n" * 5
    rng = np.random.default_rng(0)
    st = write_store(tmp_path / "s", text, {(0, "h"): rng.normal(size=(len(text), 4))},
                     {"vocab_size": len(set(text)), "cell": "lstm", "layers": 1, "hidden": 4},
                     sorted(set(text)))
    first_if = text.index("if (")
    expect = text.rindex("\n", 0, first_if - 8) + 1  # two lines up: "int a;" then "x = 1;"
    assert text[expect:first_if] == "int a;\nx = 1;\n"
    assert feature_start(st, "in_if") == expect and feature_start(st, "column") == 0
    r = cli("export", tmp_path / "s", "--feature", "in_if", "--top", 1, "--length", 40, "--out", tmp_path / "p.html")
    assert r.exit_code == 0 and f"({expect:,}-{expect + 40:,})" in r.output, r.output
    r = cli("export", tmp_path / "s", "--feature", "in_if", "--top", 1, "--start", 0, "--length", 40,
            "--out", tmp_path / "p.html")
    assert "(0-40)" in r.output


def test_the_default_colour_range_is_each_units_1st_to_99th_percentile(tmp_path):
    """A spike (a zero start state, one long line) does not wash out the rest: the export's default scale runs
    over each unit's own 1st-99th percentile, 0 white, values beyond it at the ends."""
    from rnnviz.store.writer import write_store
    from rnnviz.views.colours import unit_scale

    text = "abc\n" * 500
    rng = np.random.default_rng(0)
    v = rng.uniform(-1, 2, size=(len(text), 1))
    v[:5] = 9.57  # the spike at the first characters
    st = write_store(tmp_path / "s", text, {(0, "c"): v}, {"vocab_size": 4, "cell": "lstm", "layers": 1, "hidden": 1},
                     sorted(set(text)))
    scale = unit_scale(st, "0:c:0", "robust")
    lo, hi = np.percentile(np.asarray(st.unit("0:c:0"), dtype=np.float32), [1, 99])
    assert (scale.lo, scale.hi, scale.mid) == pytest.approx((lo, hi, 0.0), abs=1e-6)
    page = export_html(st, ["0:c:0"], length=200)
    parsed = Page(page.html)
    got = [int(cls[1:]) for d, cls, _ in parsed.blocks[0] for _ in d if cls]
    want = scale.bins(np.asarray(st.unit("0:c:0")[:200])).tolist()
    assert got == [b for b in want if b >= 0] and got[:5] == [32] * 5  # the spike at the red end
    assert len(set(got[5:])) > 20  # the rest spread over the scale, not a few pale steps
    assert unit_scale(st, "0:c:0", "max").bins(np.asarray(st.unit("0:c:0")[5:200])).max() < 24


def test_unit_scales_read_once_and_equal_each_units_own_scale(tmp_path, monkeypatch):
    """The Overview's colour ranges for a whole group: one read of the sample, and per unit exactly the
    percentiles of its finite values (a column with NaN or inf, or with no finite value, included)."""
    from rnnviz.store.writer import write_store
    from rnnviz.views import colours

    text = "abc\n" * 600
    rng = np.random.default_rng(1)
    v = rng.normal(size=(len(text), 4)).astype(np.float32)
    v[::7, 1] = np.nan
    v[3, 2] = np.inf
    v[:, 3] = np.nan  # a dead unit: the natural range
    st = write_store(tmp_path / "s", text, {(0, "h"): v}, {"vocab_size": 4, "cell": "lstm", "layers": 1, "hidden": 4},
                     sorted(set(text)))
    units = [f"0:h:{j}" for j in range(4)]
    for mode, qs, absolute in (("robust", (1, 99), False), ("p99", (99,), True)):
        reads, real = [], type(st).read

        def counted(self, *a, reads=reads, real=real, **k):
            reads.append(a)
            return real(self, *a, **k)

        monkeypatch.setattr(type(st), "read", counted)
        got = colours.unit_scales(st, units, mode)
        monkeypatch.undo()
        assert len(reads) == 1
        assert [(s.lo, s.hi, s.mid) for s in got] == [(s.lo, s.hi, s.mid) for s in
                                                      (colours.unit_scale(st, u, mode) for u in units)]
        for j in range(3):
            x = np.asarray(st.unit(units[j]), dtype=np.float32)
            x = np.abs(x[np.isfinite(x)]) if absolute else x[np.isfinite(x)]
            want = np.percentile(x, qs)
            assert (got[j].lo, got[j].hi) == pytest.approx((want[0], want[-1]) if mode == "robust"
                                                           else (-want[0], want[0]), abs=1e-6)
        assert (got[3].lo, got[3].hi) == (-1.0, 1.0)
