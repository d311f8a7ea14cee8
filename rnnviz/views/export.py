"""Self-contained HTML heatmaps: the text, each character's background coloured by one cell.

The picture from the paper: one block per unit, the text window in monospace with whitespace kept,
each character shaded by the unit's value after reading it (blue <-> red for tanh-range states,
white -> green for gates in [0, 1], ``c`` scaled by its recorded range). Hovering a character shows
the exact stored value, the character's loss and the model's top predictions for the next character.

A token store (rows are tokens with spans in the text) is shown as its text: each token's characters take
the token's colour, characters between tokens (the spaces between words) none; positions and ranges
(``start``, ``length``, the tooltip's ``#N``) count rows, and the tooltip names the token.

The file needs no network: no CDN, no web fonts; it works from ``file://``. To keep 100k characters x
a few units light, consecutive characters of the same colour share one ``<i class=dN>`` run, the
per-character numbers live once in a compact JSON block (base64 float16 / uint8), and the script splits
a run into single characters only when the pointer enters it.

Every character of the text is HTML-escaped (``&#13;`` keeps a carriage return from being folded into a
newline, NUL becomes U+FFFD so positions never shift), and the JSON is escaped so ``</script>`` in it
cannot end its script element.

The page is :file:`rnnviz/views/assets/export.html.j2` (a Jinja2 template, autoescaped with
:func:`escape_text`) with :file:`export.css` and :file:`export.js` from the same folder; the coloured text
inside it is built by a hand-written loop (:func:`_runs`), the fast path for a million characters.
"""

from __future__ import annotations

import base64
import functools
import html
import itertools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import jinja2
import numpy as np
from markupsafe import Markup

from rnnviz.errors import RnnvizError
from rnnviz.fsutil import atomic_file
from rnnviz.model.units import parse_unit
from rnnviz.views.colours import (  # noqa: F401 (ColourScale, colour_scale, colours: re-exported for existing callers)
    N_BINS,
    PALETTES,
    ColourScale,
    colour_scale,
    colours,
    kind_name,
    unit_scales,
)
from rnnviz.views.display import char_loss, char_rows, row_word, shown, sign_symbol

MAX_CELLS = 1_000_000  # units x characters drawn in one export: beyond this a browser takes many seconds
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


def _asset(name: str) -> str:
    """A file of ``rnnviz/views/assets`` (package data) as text."""
    return (resources.files("rnnviz.views") / "assets" / name).read_text(encoding="utf-8")


def _escape(value) -> Markup:
    """The template's escaping: :func:`escape_text` for every value not already marked safe."""
    return value if isinstance(value, Markup) else Markup(escape_text(str(value)))


@functools.cache
def _page_template() -> jinja2.Template:
    """The page skeleton, ``assets/export.html.j2`` (loaded once)."""
    env = jinja2.Environment(
        autoescape=True, finalize=_escape, keep_trailing_newline=True, undefined=jinja2.StrictUndefined
    )
    return env.from_string(_asset("export.html.j2"))


@functools.cache
def _page_assets() -> tuple[Markup, Markup]:
    """(the page's CSS, its script), from ``assets/export.css`` and ``assets/export.js``."""
    return Markup(_asset("export.css")), Markup(_asset("export.js"))


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
        raise RnnvizError(f"start {start} is past the end of the store ({T:,} {row_word(store, T)})")
    if length is not None and length < 1:
        raise RnnvizError(f"length must be >= 1, got {length}")
    stop = T if length is None else min(T, start + int(length))  # a length past the end stops at the end
    return int(start), stop


def _check_units(store, units: Sequence[str]) -> list[str]:
    if isinstance(units, str):
        units = [units]
    if not list(units):
        raise RnnvizError("no units to export: name at least one, e.g. 1:c:42")
    return list(store.check_units(units))


def titles_from_cells(cells) -> dict[str, str]:
    """A ``find_cells`` DataFrame -> ``{unit: "FEATURE: METRIC SCORE (sign +)"}`` block titles."""
    out = {}
    for row in cells.itertuples(index=False):
        sign = getattr(row, "sign", None)
        if isinstance(sign, (int, float, np.integer, np.floating)) and not isinstance(sign, bool):
            sign = sign_symbol(sign)
        tail = f" (sign {sign})" if sign not in (None, "") else ""
        out[row.unit] = f"{row.feature}: {row.metric} {float(row.score):.3f}{tail}"
    return out


def _block(name: str, text: str, values: np.ndarray, stats, title, chunks: dict[int, str], scale,
           rows: np.ndarray, cell: str = "") -> dict:
    """One unit's section for the template: header, optional title, legend with the numeric range, and
    the coloured text (already HTML). ``values`` are per row, ``rows`` each character's row (-1: between
    tokens, no colour, as a NaN)."""
    layer, kind, index = parse_unit(name)
    bins = np.concatenate([scale.bins(values), [-1]])[rows]  # rows[j] == -1 picks the appended -1
    return {
        "name": name, "kind": kind, "kind_name": kind_name(kind, cell), "layer": layer, "index": index,
        "title": str(title) if title else "", "cls": scale.name[0], "lo": _fmt(scale.lo), "hi": _fmt(scale.hi),
        "zero": "" if scale.name == "sequential" else " · white at 0",
        "rec": f" · whole recording: mean {_fmt(stats['mean'])}, min {_fmt(stats['min'])}, max {_fmt(stats['max'])}",
        "runs": Markup(_runs(text, bins, scale.name[0], chunks)),
    }


def _shared_data(store, text: str, start: int, stop: int) -> dict:
    """Per-row numbers shared by every block: each row's loss (nats, float16) and the model's top
    predictions for the next one (ids, probabilities in 1/255 steps); ``vis``: how the tooltip names the
    window's and the vocabulary's whitespace and control characters; in a token store ``tok``, each token's
    [start, end) in the window's text (int32), by which the page finds a character's token."""
    out: dict = {}
    if store.is_tokens:
        a = store.chars_of_rows(start, stop)[0]
        spans = (np.asarray(store.spans[start:stop]) - a).astype("<i4")
        out["tok"] = {"s": _b64(spans[:, 0]), "e": _b64(spans[:, 1])}
    if store.meta.has_logprob:
        out["loss"] = _b64(char_loss(store, start, stop).astype("<f2"))
    ids, probs = store.topk
    k = min(TOP_SHOWN, ids.shape[1])
    vocab = list(store.vocab.chars)
    if k:
        wide = len(vocab) > 256
        p = np.nan_to_num(np.asarray(probs[start:stop, :k], dtype=np.float32))
        out.update(
            k=k,
            idw=2 if wide else 1,
            vocab=vocab,
            ids=_b64(np.asarray(ids[start:stop, :k]).astype("<u2" if wide else np.uint8)),
            p=_b64(np.rint(np.clip(p, 0, 1) * 255).astype(np.uint8)),
        )
    chars = set(text).union(*vocab) if store.is_tokens else set(text).union(vocab)  # tokens: their characters
    out["vis"] = {c: shown(c) for c in sorted(chars) if shown(c) != c}
    return out


def catalog_html(df) -> str:
    """An :func:`rnnviz.explain` DataFrame as an HTML table (text escaped), best score first."""
    from rnnviz.analysis.explain_control import catalog_count

    cols = ["unit", "score", "sign", "auroc", "explanation", "rule"]
    rows = []
    for r in df.sort_values("score", ascending=False, kind="stable").itertuples(index=False):
        cells = [r.unit, f"{r.score:.3f}", sign_symbol(r.sign),
                 "" if r.auroc != r.auroc else f"{r.auroc:.3f}", r.explanation, r.rule]
        rows.append("<tr>" + "".join(f"<td>{escape_text(str(c))}</td>" for c in cells) + "</tr>")
    return (
        f"<h2>Catalog</h2><p class=src>{escape_text(catalog_count(list(df['role']), df.attrs['min_score']))}. "
        "Rule chosen on one half of the text, score = its Pearson r with the unit on the other half "
        "(rnnviz explain)</p>"
        "<table class=catalog><thead><tr>" + "".join(f"<th>{c}</th>" for c in cols) + "</tr></thead><tbody>"
        + "".join(rows) + "</tbody></table>\n"
    )


def _check_titles(titles, units: list[str]) -> dict:
    """``titles`` (None, a mapping unit -> text, or a list parallel to ``units``) as a mapping."""
    if titles is None:
        return {}
    if isinstance(titles, Mapping):
        return titles
    titles = list(titles)
    if len(titles) != len(units):
        raise RnnvizError(f"got {len(titles)} titles for {len(units)} units")
    return dict(zip(units, titles, strict=True))


def _hover_text(store) -> str:
    """What the tooltip tells beside the value: the loss and the next-row predictions, where the store has them."""
    parts = ["its value"] + (["loss"] if store.meta.has_logprob else [])
    if store.k:
        parts.append(f"the model's next-{row_word(store, 1)} predictions")
    return ", ".join(parts[:-1]) + " and " + parts[-1] if len(parts) > 1 else parts[0]


def _page(store, units: list[str], start: int, stop: int, titles: Mapping, catalog, colour_range: str) -> str:
    """The whole document: the template filled with one block per unit and the page's data."""
    a, rows = char_rows(store, start, stop)
    text = store.text[a : a + len(rows)]
    chunks = _chunk_opens(text, _chunks(text))
    data = {"start": start, "stop": stop, "units": [], **_shared_data(store, text, start, stop)}
    blocks = []
    for name, scale in zip(units, unit_scales(store, units, colour_range), strict=True):
        layer, kind, index = parse_unit(name)
        values = np.asarray(store.array(layer, kind)[start:stop, index], dtype="<f2")  # (n,) as stored
        data["units"].append({"name": name, "v": _b64(values)})
        blocks.append(_block(name, text, values, store.stats.loc[name], titles.get(name), chunks, scale, rows,
                             store.cell))
    model = store.meta.model.to_dict() if store.meta.model else {}
    data["meta"] = {
        "store": store.path.name,
        "units": units,
        "titles": {u: str(t) for u, t in titles.items()},
        "model": model,
        "length": store.length,
    }
    css, js = _page_assets()
    return _page_template().render(
        title=", ".join(units), store_name=store.path.name, units=units, start=start, stop=stop,
        length=store.length, description=f"{model['cell']} {model['layers']}×{model['hidden']} · " if model else "",
        row=row_word(store, 1), rows=row_word(store), hover=_hover_text(store),
        blocks=blocks, catalog=Markup(catalog_html(catalog)) if catalog is not None else "",
        data=Markup(_script_json(data)), css=css, js=js, palettes=PALETTES, n_bins=N_BINS,
    )


def export_html(
    store,
    units: Sequence[str],
    out: str | Path | None = None,
    start: int = 0,
    length: int | None = None,
    titles: Mapping[str, str] | Sequence[str] | None = None,
    catalog=None,
    colour_range: str = "robust",
) -> HtmlExport:
    """Render units of a store (a Store or its path) over the text window [start, start+length) as one page.

    ``units``: names like ``"2:c:417"`` (one block each, in this order). ``titles``: an optional line
    under each block's header (a mapping unit -> text, or a list parallel to ``units``), e.g. the
    feature and score a cell was found by. ``length=None`` runs to the end of the text; a length past the
    end stops there. ``catalog``: a :func:`rnnviz.explain` DataFrame, appended as a table (every unit
    with its explanation and score). ``colour_range``: "max" (±max|v|), "p99" (99th percentile of |v|) or "minmax" (the
    unit's own [min, max]; see :mod:`rnnviz.views.colours`). Writes ``out`` atomically when given.
    """
    from rnnviz.views.colours import check_range_mode

    check_range_mode(colour_range)
    if isinstance(store, (str, Path)):
        from rnnviz.store.reader import open_store

        store = open_store(store)
    units = _check_units(store, units)
    if out is not None and Path(out).resolve().is_relative_to(Path(store.path).resolve()):
        raise RnnvizError(f"{out} is inside the store {store.path}: write the page elsewhere (a file there "
                          f"would break the store)")
    start, stop = _window(store, start, length)
    a, b = store.chars_of_rows(start, stop)
    n, chars = stop - start, b - a  # rows, and the characters the page draws for them
    if chars * len(units) > MAX_CELLS:
        rows = f" ({n:,} {row_word(store, n)})" if store.is_tokens else ""
        raise RnnvizError(
            f"{len(units)} unit(s) x {chars:,} characters{rows} is too much for one page (at most {MAX_CELLS:,}); "
            "choose a window with --start/--length"
        )
    page = _page(store, units, start, stop, _check_titles(titles, units), catalog, colour_range)
    result = HtmlExport(page, units, start, stop)
    if out is not None:
        result.save(out)
    return result


def feature_start(store, feature, lines_before: int = 2) -> int:
    """Where a page showing the cells of ``feature`` should start: ``lines_before`` lines before the first row
    where the feature holds (a 0/1 feature), so that a page of the ``if`` cell does not open on 190 lines
    without an ``if``; 0 for a numeric feature (it holds everywhere) or one that never holds."""
    from rnnviz.analysis.features import resolve

    f, y = resolve(feature, store.text)
    y = store.at_rows(y)
    hits = np.flatnonzero(y > 0) if f.type == "binary" else np.array([], dtype=int)
    if not len(hits):
        return 0
    a, _ = store.chars_of_rows(int(hits[0]), int(hits[0]) + 1)
    a = store.text.rfind("\n", 0, a) + 1  # the start of the line holding it
    for _ in range(lines_before):
        a = store.text.rfind("\n", 0, a - 1) + 1 if a > 0 else 0
    return store.rows_of_chars(a, a + 1)[0]
