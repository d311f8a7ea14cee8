"""Self-contained HTML heatmaps: the text, each character's background coloured by one cell.

The picture from the paper: one block per unit, the text window in monospace with whitespace kept,
each character shaded by the unit's value after reading it (blue <-> red for tanh-range states,
white -> green for gates in [0, 1], ``c`` scaled by its recorded range). Hovering a character shows
the exact stored value, the character's loss and the model's top predictions for the next character.

The file needs no network: no CDN, no web fonts; it works from ``file://``. To keep 100k characters x
a few units light, consecutive characters of the same colour share one ``<i class=dN>`` run, the
per-character numbers live once in a compact JSON block (base64 float16 / uint8), and the script splits
a run into single characters only when the pointer enters it.

Every character of the text is HTML-escaped (``&#13;`` keeps a carriage return from being folded into a
newline, NUL becomes U+FFFD so positions never shift), and the JSON is escaped so ``</script>`` in it
cannot end its script element.
"""

from __future__ import annotations

import base64
import html
import itertools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .colors import (  # noqa: F401 (ColourScale, colour_scale, colours: re-exported for existing callers)
    KIND_NAMES,
    N_BINS,
    PALETTES,
    ColourScale,
    colour_scale,
    colours,
    unit_scale,
)
from .errors import RnnvizError
from .fsutil import atomic_file
from .models import parse_unit

MAX_CELLS = 1_000_000  # units x characters in one export: beyond this a browser takes many seconds
CHUNK = 2000  # chars per content-visibility chunk: only the chunks on screen are laid out
TOP_SHOWN = 5  # top predictions carried per character for the tooltip

# --- HTML ---

# Characters whose literal form would change the text: markup, quotes, and the two characters the HTML
# parser would rewrite (CR -> LF folding, NUL dropped) so that positions stay aligned with the store.
_ESCAPES = str.maketrans({
    "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;", "\r": "&#13;", "\0": "&#65533;",
})


def escape_text(s: str) -> str:
    """Text -> HTML text content that displays exactly ``s`` (one character per character)."""
    return s.translate(_ESCAPES)


def _script_json(obj) -> str:
    """JSON safe inside ``<script>``: no ``<``, ``>`` or ``&`` at all, so nothing can close the element."""
    s = json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return s.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _b64(a: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(a).tobytes()).decode("ascii")


def _fmt(x: float) -> str:
    return f"{x:.3g}".replace("-", "\u2212")


def _chunks(text: str, size: int = CHUNK, longest: int = 4 * CHUNK) -> list[int]:
    """Cut positions splitting ``text`` into chunks of about ``size`` chars, each ending after a newline
    (so the split does not move a single character on screen); a chunk with no newline for
    ``longest`` chars is cut there (a very long line then breaks early, nothing else changes)."""
    cuts, pos = [], 0
    while len(text) - pos > size:
        nl = text.find("\n", pos + size, pos + longest)
        pos = nl + 1 if nl >= 0 else pos + longest
        if pos >= len(text):
            break
        cuts.append(pos)
    return cuts


def _chunk_opens(text: str, chunks: list[int], wrap: int = 100) -> dict[int, str]:
    """The opening tag of each chunk: its start, and its height guessed from its lines (long ones
    wrapping at about ``wrap`` chars) so that the scrollbar is right before the chunk is first drawn."""
    out = {}
    for s, e in itertools.pairwise([0, *chunks, len(text)]):
        lines = text[s:e].split("\n")
        if len(lines) > 1 and not lines[-1]:
            lines.pop()  # a final newline ends the last line, it does not start another
        rows = sum(1 + len(line) // wrap for line in lines)
        out[s] = f'<div class=p data-s={s} style="contain-intrinsic-size:auto {rows * 1.45:.1f}em">'
    return out


def _runs(text: str, bins: np.ndarray, cls: str, opens: dict[int, str]) -> str:
    """The text as chunks (``opens``: start -> opening tag) of runs ``<i class=CLS+bin>`` of equal
    colour steps; NaN steps (-1) get a bare ``<i>``. Runs never cross a chunk edge."""
    if not text:
        return ""
    cuts = set((np.flatnonzero(bins[1:] != bins[:-1]) + 1).tolist()) | set(opens)
    cuts.discard(0)
    edges = [0, *sorted(cuts), len(text)]
    tags = [f"<i class={cls}{b}>" for b in range(N_BINS)] + ["<i>"]  # tags[-1]: NaN
    first = bins.tolist()
    out = []
    for s, e in itertools.pairwise(edges):
        if s in opens:
            out.append(f"</div>{opens[s]}" if s else opens[s])
        out.append(f"{tags[first[s]]}{text[s:e].translate(_ESCAPES)}</i>")
    out.append("</div>")
    return "".join(out)


_CSS = (
    ".rnnviz table.catalog{border-collapse:collapse;font-size:12px}.rnnviz table.catalog td,"
    ".rnnviz table.catalog th{padding:1px 6px;border-bottom:1px solid #eee;text-align:left}"
    ".rnnviz{font:14px/1.4 system-ui,-apple-system,'Segoe UI',sans-serif;color:#222;margin:12px 16px}"
    ".rnnviz h1{font-size:16px;margin:0 0 2px}.rnnviz .src{color:#666;margin:0 0 8px}"
    ".rnnviz h2{font:600 15px/1.3 ui-monospace,Menlo,Consolas,'DejaVu Sans Mono',monospace;margin:14px 0 2px}"
    ".rnnviz h2 small{font:13px system-ui,sans-serif;color:#666;margin-left:8px}"
    ".rnnviz .ti{margin:0 0 2px;color:#333}.rnnviz .lg{margin:2px 0 4px;color:#555;font-size:12px}"
    ".rnnviz .lg b{display:inline-block;width:5px;height:12px;vertical-align:-2px}"
    ".rnnviz .lg .bar{margin:0 6px;border:1px solid #ccc;display:inline-block;line-height:0}"
    ".rnnviz .x{font:13px/1.45 ui-monospace,Menlo,Consolas,'DejaVu Sans Mono','Liberation Mono',monospace;"
    "white-space:pre-wrap;overflow-wrap:anywhere;tab-size:4;border:1px solid #ddd;padding:6px 8px;"
    "max-height:70vh;overflow:auto;color:#000}"
    ".rnnviz .p{content-visibility:auto;contain-intrinsic-size:auto 30em}"
    ".rnnviz .x i{font-style:normal;padding:1px 0}.rnnviz .x i:hover{outline:1px solid #000}"
    ".rnnviz .tip{position:fixed;z-index:9;pointer-events:none;white-space:pre;background:#fffff4;"
    "border:1px solid #888;padding:4px 7px;font:12px/1.45 ui-monospace,Menlo,Consolas,monospace;"
    "box-shadow:0 2px 6px rgba(0,0,0,.2)}"
)

# Hover: the first time the pointer enters a block, give each run its start index (in code points);
# when it enters a run longer than one character, replace the run by one <i> per character (same
# class, so nothing moves) and look again at the point. Numbers are decoded from base64 lazily.
_JS = r"""(function () {
"use strict";
var D = JSON.parse(document.getElementById("rnnviz-data").textContent);
var tip = document.getElementById("rnnviz-tip");
function u8(s) {
  var b = atob(s), a = new Uint8Array(b.length);
  for (var i = 0; i < b.length; i++) a[i] = b.charCodeAt(i);
  return a;
}
function u16(s) {
  var a = u8(s), o = new Uint16Array(a.length >> 1);
  for (var i = 0; i < o.length; i++) o[i] = a[2 * i] | a[2 * i + 1] << 8;
  return o;
}
function h2f(h) {  // IEEE half -> number
  var s = h & 32768 ? -1 : 1, e = h >> 10 & 31, m = h & 1023;
  if (e === 0) return s * m * Math.pow(2, -24);
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * Math.pow(2, e - 15);
}
function f16(s) { return Float32Array.from(u16(s), h2f); }
var r16 = Math.f16round || function (x) {  // nearest half (ties aside): enough to find the shortest digits
  if (!isFinite(x) || x === 0) return x;
  var a = Math.abs(x), q = Math.pow(2, Math.max(Math.floor(Math.log2(a)), -14) - 10), r = Math.round(a / q) * q;
  return x < 0 ? -r : r;
};
function exact(x) {  // the shortest decimal that reads back as the same float16: the stored value
  if (!isFinite(x)) return String(x);
  for (var p = 1; p < 8; p++) { var s = +x.toPrecision(p); if (r16(s) === x) return String(s); }
  return String(x);
}
function vis(c) {
  if (c === "\n") return "\u21b5";
  if (c === " ") return "\u2423";
  if (c === "\t") return "\u21e5";
  return c < " " ? String.fromCharCode(9216 + c.charCodeAt(0)) : c;  // control pictures
}
function cplen(t) {  // length in code points (the store's unit), not UTF-16
  var n = t.length;
  for (var i = 0; i < t.length; i++) { var c = t.charCodeAt(i); if (c >= 56320 && c < 57344) n--; }
  return n;
}
function isChar(el) { return el && el.tagName === "I" && el.parentNode.classList.contains("p"); }
function index(p) {  // each run's start position, once per chunk
  if (p._ok) return;
  for (var s = +p.dataset.s, c = p.children, i = 0; i < c.length; i++) { c[i]._s = s; s += cplen(c[i].textContent); }
  p._ok = 1;
}
function split(el) {  // one run -> one <i> per character, same class: the layout does not move
  var cs = Array.from(el.textContent), f = document.createDocumentFragment();
  for (var k = 0; k < cs.length; k++) {
    var e = document.createElement("i");
    e.className = el.className; e.textContent = cs[k]; e._s = el._s + k; f.appendChild(e);
  }
  el.replaceWith(f);
}
function show(el, x, y) {
  var u = D.units[+el.parentNode.parentNode.dataset.b], i = el._s, L = [];
  if (!u.f) u.f = f16(u.v);
  L.push(u.name + " = " + exact(u.f[i]));
  var line = "#" + (D.start + i) + " '" + vis(el.textContent) + "'";
  if (D.loss) {
    if (!D.lf) D.lf = f16(D.loss);
    line += "  loss " + (isNaN(D.lf[i]) ? "n/a" : D.lf[i].toPrecision(3) + " nats");
  }
  L.push(line);
  if (D.ids) {
    if (!D.idf) { D.idf = D.idw === 1 ? u8(D.ids) : u16(D.ids); D.pf = u8(D.p); }
    for (var ps = [], j = 0; j < D.k; j++) {
      var pc = D.pf[i * D.k + j] / 2.55;
      ps.push(vis(D.vocab[D.idf[i * D.k + j]]) + " " + (pc < 1 ? "<1" : pc.toFixed(0)) + "%");
    }
    L.push("next: " + ps.join("  "));
  }
  tip.textContent = L.join("\n");
  tip.hidden = false;
  move(x, y);
}
function move(x, y) {  // beside the pointer, kept inside the window
  var w = tip.offsetWidth, h = tip.offsetHeight, X = x + 14, Y = y + 16;
  if (X + w > innerWidth - 4) X = Math.max(4, x - w - 10);
  if (Y + h > innerHeight - 4) Y = Math.max(4, y - h - 12);
  tip.style.left = X + "px"; tip.style.top = Y + "px";
}
document.addEventListener("mouseover", function (ev) {
  var el = ev.target;
  if (el.classList && (el.classList.contains("p") || el.classList.contains("x"))) return;  // between lines
  if (!isChar(el)) { tip.hidden = true; return; }
  index(el.parentNode);
  if (cplen(el.textContent) > 1) {
    split(el);
    el = document.elementFromPoint(ev.clientX, ev.clientY);
    if (!isChar(el)) { tip.hidden = true; return; }
  }
  show(el, ev.clientX, ev.clientY);
});
document.addEventListener("mousemove", function (ev) { if (!tip.hidden) move(ev.clientX, ev.clientY); });
document.documentElement.addEventListener("mouseleave", function () { tip.hidden = true; });
})();"""


@dataclass
class HtmlExport:
    """One exported page: ``html`` is the whole self-contained document (UTF-8 text)."""

    html: str = field(repr=False)  # megabytes: not for a REPL line
    units: list[str]
    start: int
    stop: int

    def _repr_html_(self) -> str:
        # An iframe keeps the page's CSS and script away from the notebook's, and runs in JupyterLab too.
        doc = html.escape(self.html, quote=True)
        return (
            f'<iframe srcdoc="{doc}" sandbox="allow-scripts" '
            'style="width:100%;height:560px;border:1px solid #ddd;resize:vertical"></iframe>'
        )

    def save(self, path: str | Path) -> Path:
        """Write the page atomically (a temp file renamed into place); returns the path."""
        path = Path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise RnnvizError(f"cannot write {path}: {e.strerror or e}") from e
        with atomic_file(path, "w") as f:
            f.write(self.html)
        return path


def _window(store, start: int, length: int | None) -> tuple[int, int]:
    T = int(store.length)
    for name, v in (("start", start), ("length", length)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, np.integer))):
            raise RnnvizError(f"{name} must be an integer, got {v!r}")
    if start < 0:
        raise RnnvizError(f"start must be >= 0, got {start}")
    if start >= T:
        raise RnnvizError(f"start {start} is past the end of the store ({T:,} characters)")
    if length is not None and length < 1:
        raise RnnvizError(f"length must be >= 1, got {length}")
    stop = T if length is None else min(T, start + int(length))  # a length past the end stops at the end
    return int(start), stop


def _check_units(store, units: Sequence[str]) -> list[str]:
    if isinstance(units, str):
        units = [units]
    units = list(units)
    if not units:
        raise RnnvizError("no units to export: name at least one, e.g. 1:c:42")
    have = store.units  # O(1) membership
    for u in units:
        if u not in have:
            parse_unit(u)  # a malformed name gets the format message
            raise RnnvizError(
                f"unit {u!r} is not in the store (layers {', '.join(map(str, store.layers))}; "
                f"kinds {', '.join(store.kinds)}; {store.hidden} units per layer)"
            )
    return units


def titles_from_cells(cells) -> dict[str, str]:
    """A ``find_cells`` DataFrame -> ``{unit: "FEATURE: METRIC SCORE (sign +)"}`` block titles."""
    out = {}
    for row in cells.itertuples(index=False):
        sign = getattr(row, "sign", None)
        if isinstance(sign, (int, float, np.integer, np.floating)) and not isinstance(sign, bool):
            sign = "+" if sign >= 0 else "\u2212"
        tail = f" (sign {sign})" if sign not in (None, "") else ""
        out[row.unit] = f"{row.feature}: {row.metric} {float(row.score):.3f}{tail}"
    return out


def _block(b: int, name: str, text: str, values: np.ndarray, stats, title, chunks: dict[int, str], scale) -> str:
    """One unit's section: header, optional title, legend with the numeric range, the coloured text."""
    layer, kind, index = parse_unit(name)
    cls = scale.name[0]
    swatches = "".join(f"<b class={cls}{i}></b>" for i in range(N_BINS))
    zero = "" if scale.name == "sequential" else " · white at 0"
    rec = f" · whole recording: mean {_fmt(stats['mean'])}, min {_fmt(stats['min'])}, max {_fmt(stats['max'])}"
    return (
        f"<section class=u><h2>{escape_text(name)}<small>{KIND_NAMES[kind]} {kind} · layer {layer} · "
        f"unit {index}</small></h2>"
        + (f"<p class=ti>{escape_text(str(title))}</p>" if title else "")
        + f"<div class=lg>{_fmt(scale.lo)}<span class=bar>{swatches}</span>{_fmt(scale.hi)}{zero}{rec}</div>"
        f"<div class=x data-b={b}>{_runs(text, scale.bins(values), cls, chunks)}</div></section>\n"
    )


def _shared_data(store, start: int, stop: int) -> dict:
    """Per-character numbers shared by every block: each character's loss (nats, float16) and the
    model's top predictions for the next one (ids, probabilities in 1/255 steps)."""
    out: dict = {}
    if store.manifest.get("has_logprob", True):
        lp = np.asarray(store.logprob[max(start - 1, 0) : stop - 1], dtype=np.float32)
        loss = -np.concatenate([[np.nan], lp]) if start == 0 else -lp  # char t's loss = -log p(t | <t)
        out["loss"] = _b64(loss.astype("<f2"))
    ids, probs = store.topk
    k = min(TOP_SHOWN, ids.shape[1])
    if k:
        vocab = list(store.vocab.chars)
        wide = len(vocab) > 256
        p = np.nan_to_num(np.asarray(probs[start:stop, :k], dtype=np.float32))
        out.update(
            k=k,
            idw=2 if wide else 1,
            vocab=vocab,
            ids=_b64(np.asarray(ids[start:stop, :k]).astype("<u2" if wide else np.uint8)),
            p=_b64(np.rint(np.clip(p, 0, 1) * 255).astype(np.uint8)),
        )
    return out


def catalog_html(df) -> str:
    """An :func:`rnnviz.explain` DataFrame as an HTML table (text escaped), best score first."""
    cols = ["unit", "score", "sign", "auroc", "explanation", "rule"]
    rows = []
    for r in df.sort_values("score", ascending=False, kind="stable").itertuples(index=False):
        cells = [r.unit, f"{r.score:.3f}", "+" if r.sign > 0 else "\u2212",
                 "" if r.auroc != r.auroc else f"{r.auroc:.3f}", r.explanation, r.rule]
        rows.append("<tr>" + "".join(f"<td>{escape_text(str(c))}</td>" for c in cells) + "</tr>")
    n = int((df["rule"] != "unexplained").sum())
    return (
        f"<h2>Catalog: {n:,} of {len(df):,} units explained</h2><p class=src>rule chosen on the first half of the "
        "text, score = its Pearson r with the unit on the second half (rnnviz explain)</p>"
        "<table class=catalog><thead><tr>" + "".join(f"<th>{c}</th>" for c in cols) + "</tr></thead><tbody>"
        + "".join(rows) + "</tbody></table>\n"
    )


def export_html(
    store,
    units: Sequence[str],
    out: str | Path | None = None,
    start: int = 0,
    length: int | None = None,
    titles: Mapping[str, str] | Sequence[str] | None = None,
    catalog=None,
    colour_range: str = "max",
) -> HtmlExport:
    """Render units of a store (a Store or its path) over the text window [start, start+length) as one page.

    ``units``: names like ``"2:c:417"`` (one block each, in this order). ``titles``: an optional line
    under each block's header (a mapping unit -> text, or a list parallel to ``units``), e.g. the
    feature and score a cell was found by. ``length=None`` runs to the end of the text; a length past the
    end stops there. ``catalog``: a :func:`rnnviz.explain` DataFrame, appended as a table (every unit
    with its explanation and score). ``colour_range``: "max" (±max|v|), "p99" (99th percentile of |v|) or "minmax" (the
    unit's own [min, max]; see :mod:`rnnviz.colors`). Writes ``out`` atomically when given.
    """
    from .colors import check_range_mode

    check_range_mode(colour_range)
    if isinstance(store, (str, Path)):
        from .store import open_store

        store = open_store(store)
    units = _check_units(store, units)
    start, stop = _window(store, start, length)
    n = stop - start
    if n * len(units) > MAX_CELLS:
        raise RnnvizError(
            f"{len(units)} unit(s) x {n:,} characters is too much for one page (at most {MAX_CELLS:,}); "
            "choose a window with --start/--length"
        )
    if titles is None:
        titles = {}
    elif not isinstance(titles, Mapping):
        titles = list(titles)
        if len(titles) != len(units):
            raise RnnvizError(f"got {len(titles)} titles for {len(units)} units")
        titles = dict(zip(units, titles, strict=True))

    text = store.text[start:stop]
    chunks = _chunk_opens(text, _chunks(text))
    data = {"start": start, "stop": stop, "units": [], **_shared_data(store, start, stop)}
    blocks = []
    for b, name in enumerate(units):
        layer, kind, index = parse_unit(name)
        values = np.asarray(store.array(layer, kind)[start:stop, index], dtype="<f2")  # (n,) as stored
        data["units"].append({"name": name, "v": _b64(values)})
        scale = unit_scale(store, name, colour_range)
        blocks.append(_block(b, name, text, values, store.stats.loc[name], titles.get(name), chunks, scale))
    model = store.manifest.get("model") or {}
    data["meta"] = {
        "store": store.path.name,
        "units": units,
        "titles": {u: str(t) for u, t in titles.items()},
        "model": model,
        "length": store.length,
    }
    desc = f"{model['cell']} {model['layers']}×{model['hidden']} · " if model else ""
    page = (
        "<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>"
        "<meta name=viewport content='width=device-width,initial-scale=1'><link rel=icon href='data:,'>"
        f"<title>{escape_text(', '.join(units))} · rnnviz</title><style>{_CSS}"
        + "".join(f".rnnviz .{nm[0]}{i}{{background:{c}}}" for nm, pal in PALETTES.items() for i, c in enumerate(pal))
        + "</style></head>\n<body><div class=rnnviz>"
        f"<h1>{escape_text(store.path.name)}: {len(units)} unit{'s' if len(units) != 1 else ''}</h1>"
        f"<p class=src>{escape_text(desc)}characters {start:,}–{stop:,} of {store.length:,} · colour = the "
        "unit's value after reading the character · hover a character for its value, loss and the model's "
        "next-character predictions</p>\n"
        + "".join(blocks)
        + (catalog_html(catalog) if catalog is not None else "")
        + "<div id=rnnviz-tip class=tip hidden></div>\n"
        f"<script type=application/json id=rnnviz-data>{_script_json(data)}</script>\n"
        f"<script>{_JS}</script></div></body></html>\n"
    )
    result = HtmlExport(page, units, start, stop)
    if out is not None:
        result.save(out)
    return result
