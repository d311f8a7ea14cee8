"""What happens when the user acts: plain functions of (stores, view, inputs), wired to Dash by
:func:`register`. Each function can be called directly in a test, without a browser or a server.

One callback, :func:`navigate`, owns the view (store, unit, compare unit, window, feature, highlight),
the URL and the picker controls, so that the URL and the controls can never disagree. Everything else
reads the view: the text window and its trace (:func:`render_window`), the ranked units for the
view's feature (:func:`rank_units`), the plots, select-to-find (:func:`select_range`) and sampling
(:func:`sample_pair`). A user error comes back as a one-line message shown on the page.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from dash import ALL, Input, Output, State, ctx, html, no_update
from dash.exceptions import PreventUpdate

from ..discover import find_cells, gate_saturation, gradient_flow
from ..errors import RnnvizError
from ..models import parse_unit
from ..sampling import sample
from . import figures, select, textview
from .state import WINDOW, clean, clip_start, find_text, from_query, query_fields, step_unit, to_int, to_query
from .stores import StoreSet, check_regex

CONTEXT = 200  # characters shown before a search hit or a match
MAX_NEEDLE = 200  # characters of a search string
HIST_ROWS = 200_000  # rows sampled for a histogram (in 20 contiguous blocks on a long store)
GRADFLOW_CHARS, GRADFLOW_LAG = 600, 100
MAX_SAMPLE, MAX_PRIME = 2000, 500
MIN_FOLLOW_R = 0.5  # a correlation-rule unit is searched for only above this |r|


def _short(s: str, n: int = 40) -> str:
    return repr(s if len(s) <= n else s[:n] + "…")


# --- the view ---


def navigate(
    stores: StoreSet,
    view: dict | None,
    trigger: str | None,
    value=None,
    *,
    feature_pick: str | None = None,
    regex: str | None = None,
    jump=None,
    find: str | None = None,
    window: int = WINDOW,
) -> tuple[dict, str]:
    """Apply one user action to the view. Returns (new view, message for the user or "").

    ``trigger`` names the control that fired (its component id; None = page load) and ``value`` is what
    it holds: the URL's query string for "url", the picked value for the pickers, the row's id for
    "unit-row" ("TABLE/UNIT") and "match-row" ("START-STOP"). ``feature_pick``, ``regex``, ``jump`` and
    ``find`` are the current contents of those inputs.
    """
    # Text boxes hold text; whatever else a crafted request puts there counts as empty.
    feature_pick, regex, find = (x if isinstance(x, str) else None for x in (feature_pick, regex, find))
    if trigger in (None, "url"):
        new = from_query(value, stores, window)
        msg = _link_problem(stores, query_fields(value), new)
        # A link may carry a regex: check it like a typed one (its size and syntax).
        if new["feature"].startswith("re:"):
            try:
                check_regex(new["feature"][3:])
            except RnnvizError as e:
                new["feature"], msg = "", str(e)
        return _with_feature(stores, new, None, msg)
    old = clean(view, stores, window)
    new, msg = dict(old), ""
    store = stores[old["store"]]
    if trigger == "store-pick":
        new = clean({**old, "store": value, "hl": None}, stores, window)
    elif trigger in ("layer-pick", "kind-pick", "index-pick"):
        layer, kind, index = parse_unit(old["unit"])
        try:
            if trigger == "layer-pick":
                layer = int(value)
            elif trigger == "kind-pick":
                kind = str(value)
            else:
                index = min(max(to_int(value), 0), store.hidden - 1)
        except (TypeError, ValueError):
            return old, f"a unit index is a whole number from 0 to {store.hidden - 1}"
        new["unit"] = f"{layer}:{kind}:{index}"
    elif trigger in ("unit-prev", "unit-next"):
        new["unit"] = step_unit(store.units, old["unit"], -1 if trigger == "unit-prev" else 1)
    elif trigger == "cmp-input":
        name = value.strip() if isinstance(value, str) else ""
        if name and name not in store.units:
            where = stores.names[old["store"]]
            msg = f"no unit {_short(name)} in {where}: give LAYER:KIND:INDEX, e.g. {store.units[-1]}"
            name = old["cmp"]
        new["cmp"] = name
    elif trigger in ("page-prev", "page-next"):
        step = -window if trigger == "page-prev" else window
        new["start"], new["hl"] = clip_start(old["start"] + step, store.length), None
    elif trigger in ("jump-go", "jump-input"):
        try:
            pos = to_int(jump)
        except (TypeError, ValueError):
            return old, "type a character position to go to"
        pos = min(max(pos, 0), store.length - 1)
        new["start"], new["hl"] = pos, [pos, pos + 1]
    elif trigger in ("find-go", "find-input"):
        needle = find or ""
        if not needle:
            return old, "type some text to find"
        if len(needle) > MAX_NEEDLE:
            return old, f"search for at most {MAX_NEEDLE} characters"
        after = old["hl"][0] + 1 if old["hl"] else old["start"]
        i = find_text(store.text, needle, after)
        if i < 0:
            return old, f"{_short(needle)} does not occur in {stores.names[old['store']]}"
        if i < after:
            msg = "search wrapped around to the top"
        new["hl"] = [i, i + len(needle)]
        if not old["start"] <= i <= old["start"] + window - len(needle):
            new["start"] = clip_start(i - CONTEXT, store.length)
    elif trigger == "feature-pick":
        new["feature"] = value or ""
    elif trigger in ("regex-input", "rank-go"):
        if regex:
            try:
                check_regex(regex)
            except RnnvizError as e:
                return old, str(e)
            new["feature"] = "re:" + regex
        else:
            new["feature"] = feature_pick or ""
    elif trigger == "unit-row":
        new["unit"] = str(value).split("/", 1)[-1]
    elif trigger == "match-row":
        try:
            a, b = (to_int(x) for x in str(value).split("-"))
        except ValueError:
            return old, ""
        new["hl"], new["start"] = [a, b], clip_start(a - CONTEXT, store.length)
    else:
        raise PreventUpdate
    if new["unit"] not in store.units and new["store"] == old["store"]:
        return old, f"no unit {_short(new['unit'])} in {stores.names[old['store']]}"
    new = clean(new, stores, window)
    if new["unit"] == new["cmp"]:
        new["cmp"] = ""
    return _with_feature(stores, new, old, msg)


def _link_problem(stores: StoreSet, asked: dict, view: dict) -> str:
    """What a link asked for that this dashboard does not have (a store, a unit), or ""."""
    if "store" in asked and stores.resolve(asked["store"]) is None:
        return (f"no store {_short(asked['store'])} here: this dashboard serves {', '.join(stores.names)} "
                f"(showing {stores.names[view['store']]})")
    if asked.get("unit") and asked["unit"] != view["unit"]:
        return f"no unit {_short(asked['unit'])} in {stores.names[view['store']]}: showing {view['unit']}"
    return ""


def _with_feature(stores: StoreSet, new: dict, old: dict | None, msg: str) -> tuple[dict, str]:
    """Compute a newly chosen feature now (cached), so that a bad or slow regex is refused here, once."""
    if new["feature"] and (old is None or (new["feature"], new["store"]) != (old["feature"], old["store"])):
        try:
            stores.feature(new["store"], new["feature"])
        except RnnvizError as e:
            new["feature"], msg = "", str(e)
    return new, msg


def controls(stores: StoreSet, view: dict) -> dict:
    """What the picker controls show for ``view`` (and the URL query)."""
    store = stores[view["store"]]
    layer, kind, index = parse_unit(view["unit"])
    feature = view["feature"]
    return {
        "query": to_query(view, stores),
        "store": view["store"],
        "layers": [{"label": str(l), "value": l} for l in store.layers],
        "layer": layer,
        "kinds": [{"label": k, "value": k} for k in store.kinds],
        "kind": kind,
        "index": index,
        "index_max": store.hidden - 1,
        "cmp": view["cmp"],
        "feature_pick": None if not feature or feature.startswith("re:") else feature,
        "regex": feature[3:] if feature.startswith("re:") else "",
    }


# --- the text window ---


def _feature_or_none(stores: StoreSet, view: dict) -> np.ndarray | None:
    """The view's feature values (normally cached by :func:`navigate`; recomputed, time-limited, only if
    evicted since), or None when there is none or it now fails."""
    if not view["feature"]:
        return None
    try:
        return stores.feature(view["store"], view["feature"])
    except RnnvizError:
        return None


def render_window(stores: StoreSet, view: dict, window: int = WINDOW):
    """The text view for ``view``: (window data for the browser to draw, label, legend)."""
    store = stores[view["store"]]
    feature = _feature_or_none(stores, view)
    data = textview.render(store, view if feature is not None else {**view, "feature": ""}, window, feature)
    label = f"characters {data['start']:,}–{data['stop']:,} of {store.length:,}"
    return data, label, textview.legend(store, view["unit"])


def trace(stores: StoreSet, view: dict, window: int = WINDOW) -> dict:
    """The window's curves: the unit (and compare unit), the feature and the per-character loss."""
    store = stores[view["store"]]
    start, stop = view["start"], min(store.length, view["start"] + window)
    units = [view["unit"]] + ([view["cmp"]] if view["cmp"] else [])
    vals = store.window(start, stop, units)  # (n, U): the window's rows only
    feature = _feature_or_none(stores, view)
    return figures.trace_figure(
        start,
        store.text[start:stop],
        {u: vals[:, j] for j, u in enumerate(units)},
        textview.char_loss(store, start, stop),
        (view["feature"], feature[start:stop]) if feature is not None else None,
    )


# --- hypotheses ---


def _feature_spec(stores: StoreSet, i: int, feature: str):
    """What discovery is given: a built-in name as is; a regex as a callable returning the cached
    time-limited result (so the user's pattern never runs unguarded)."""
    if not feature.startswith("re:"):
        return feature
    values = stores.feature(i, feature)

    def regex_feature(text: str) -> np.ndarray:
        return values

    regex_feature.__name__ = feature
    return regex_feature


def _rank_rows(df: pd.DataFrame, tag: str, cols: list[str]) -> html.Table:
    """A ranked-units table; each row's id names its unit, and a click on it picks that unit."""
    head = html.Thead(html.Tr([html.Th("#")] + [html.Th(c) for c in cols]))
    body = []
    for r, row in enumerate(df.itertuples(index=False), start=1):
        cells = [html.Td(str(r))]
        for c in cols:
            v = getattr(row, c)
            if c == "sign":
                v = "+" if v >= 0 else "−"
            elif isinstance(v, (float, np.floating)):
                v = f"{v:.3f}"
            cells.append(html.Td(str(v)))
        body.append(html.Tr(cells, id={"type": "unit-row", "index": f"{tag}/{row.unit}"}, n_clicks=0,
                            title=f"colour the text by {row.unit}"))
    return html.Table([head, html.Tbody(body)], className="rank")


def rank_units(stores: StoreSet, view: dict, top: int = 15) -> tuple[object, str]:
    """The units that best match the view's feature: (table, message)."""
    feature = view["feature"]
    if not feature:
        return None, ""
    i = view["store"]

    def make() -> pd.DataFrame:
        return find_cells(stores[i], _feature_spec(stores, i, feature), top=top)

    try:
        df = stores.cached(("rank", i, feature, top), make)
    except RnnvizError as e:
        return None, str(e)
    cols = ["unit", "metric", "score", "sign", "selectivity", "effect_size"]
    note = f"{feature}: top {len(df)} units, ranked by selectivity (score minus the character-only control)"
    return html.Div([html.Div(note, className="note"), _rank_rows(df, "rank", cols)]), ""


# --- plots ---


def _sample_blocks(length: int, rows: int = HIST_ROWS, blocks: int = 20) -> list[tuple[int, int]]:
    """Row ranges to read for a statistic: everything on a short store, else evenly spaced blocks."""
    if length <= rows:
        return [(0, length)]
    size = rows // blocks
    starts = np.linspace(0, length - size, blocks).astype(int)
    return [(int(s), int(s) + size) for s in starts]


def histogram(stores: StoreSet, view: dict):
    """The unit's distribution, split by the view's feature value."""
    store, unit = stores[view["store"]], view["unit"]
    blocks = _sample_blocks(store.length)
    values = np.concatenate([store.window(a, b, [unit])[:, 0] for a, b in blocks])
    feature = None
    if view["feature"]:
        f = stores.feature(view["store"], view["feature"])
        feature = (view["feature"], np.concatenate([f[a:b] for a, b in blocks]))
    n = sum(b - a for a, b in blocks)
    note = "all characters" if n == store.length else f"{n:,} characters in {len(blocks)} blocks"
    return figures.histogram_figure(unit, values, feature, note)


def saturation(stores: StoreSet, i: int):
    """The gate-saturation scatter of store ``i`` (from the per-unit statistics written by the recorder)."""
    df = stores.cached(("sat", i), lambda: gate_saturation(stores[i]))
    return figures.saturation_figure(df, stores.names[i])


def _model(stores: StoreSet, i: int) -> tuple[object, str]:
    """Store ``i``'s model, or (None, why not): moved or changed since recording, or no longer loading."""
    try:
        model = stores.model(i)
    except RnnvizError as e:  # e.g. its config.json edited since: the weights no longer fit
        return None, f"{stores.names[i]}: the recorded checkpoint does not load: {e}"
    if model is None:
        return None, (f"{stores.names[i]}: the recorded checkpoint is not reachable (moved, or its weights "
                      "changed), so there is nothing to sample from")
    return model, ""


def gradflow(stores: StoreSet, chars: int = GRADFLOW_CHARS, max_lag: int = GRADFLOW_LAG) -> tuple[object, str]:
    """Gradient flow of every loaded store's model over the first ``chars`` characters of its text."""
    loaded = [_model(stores, i) for i in range(len(stores))]
    models = [m for m, _ in loaded]
    missing = [stores.names[i] for i, m in enumerate(models) if m is None]
    broken = [why for m, why in loaded if m is None and "does not load" in why]
    msg = f"checkpoint not reachable for: {', '.join(missing)}" if missing else ""
    msg = "; ".join([msg, *broken]) if broken else msg
    if len(missing) == len(models):
        return figures.message_figure("no store's checkpoint is reachable: gradient flow needs the model"), msg
    curves = []
    for i, (store, model) in enumerate(zip(stores.stores, models, strict=True)):
        if model is None:
            continue
        text = model.vocab.prepare(store.text[:chars], "skip")
        df = stores.cached(("gradflow", i, chars, max_lag), lambda m=model, t=text: gradient_flow(m, t, max_lag))
        curves.append((f"{stores.names[i]} ({store.cell})", df))
    return figures.gradflow_figure(curves), msg


# --- select to find ---


def select_range(stores: StoreSet, view: dict, a, b, threshold=1.0) -> tuple[object, object, str]:
    """Select-to-find for [a, b): (unit tables, matches table, message)."""
    store = stores[view["store"]]
    try:
        a, b = to_int(a), to_int(b)
        threshold = float(threshold if threshold is not None else 1.0)
    except (TypeError, ValueError):
        return None, None, "select some text, or type a range: from and to are character positions"
    try:
        thr, cor = select.units_for_range(store, a, b, threshold=threshold)
    except RnnvizError as e:
        return None, None, str(e)
    # Follow the threshold rule's units; failing those, only clearly correlated ones (else matches are noise).
    follow = thr.head(5) if len(thr) else cor[cor["score"] >= MIN_FOLLOW_R].head(3)
    cols = ["unit", "sign", "score", "inside", "around"]
    none = html.Div("none: lower θ, or select a tighter range", className="note")
    tables = html.Div([
        html.Div(f"Units on inside {a:,}–{b:,} and off around it (θ = {threshold:g} σ): {len(thr)}", className="note"),
        _rank_rows(thr, "thr", cols) if len(thr) else none,
        html.Div("Units most correlated with the selection (|r| against in/out over twice its length each side)",
                 className="note"),
        _rank_rows(cor, "cor", cols),
    ])
    if follow.empty:
        why = f"none on inside and off around, no |r| ≥ {MIN_FOLLOW_R}"
        return tables, None, f"no unit marks {a:,}–{b:,} clearly ({why}): nothing to search for"
    matches, (lo, hi) = select.find_matches(
        store, list(follow["unit"]), [int(s) for s in follow["sign"]], threshold=threshold, query=(a, b)
    )
    where = "the whole store" if (lo, hi) == (0, store.length) else f"characters {lo:,}–{hi:,}"
    head = html.Div(
        f"Where {', '.join(follow['unit'])} switch on together ({where}): {len(matches)} best", className="note"
    )
    rows = []
    for r, m in enumerate(matches.itertuples(index=False), start=1):
        s, e = int(m.start), int(m.stop)
        snippet = store.text[max(0, s - 15) : s] + "[" + store.text[s : min(e, s + 60)] + "]" + store.text[e : e + 15]
        rows.append(html.Tr([html.Td(str(r)), html.Td(f"{s:,}–{e:,}"), html.Td(f"{m.score:.2f}"),
                             html.Td(textview.visible_line(snippet), className="snip")],
                            id={"type": "match-row", "index": f"{s}-{e}"}, n_clicks=0, title="go there"))
    table = html.Table([html.Thead(html.Tr([html.Th(x) for x in ("#", "range", "score", "text")])),
                        html.Tbody(rows)], className="rank")
    return tables, html.Div([head, table]), ""


# --- sampling ---


def sample_pair(stores: StoreSet, view: dict, prime, length, temperature, seed, value) -> tuple[object, str]:
    """Two samples with the same seed: unclamped, and with the view's unit clamped to ``value``."""
    model, why = _model(stores, view["store"])
    if model is None:
        return None, why
    try:
        length = min(max(to_int(length), 1), MAX_SAMPLE)
        temperature = float(temperature)
        seed = to_int(seed or 0)
        value = float(value)
    except (TypeError, ValueError):
        return None, "length, temperature, seed and clamp value must be numbers"
    if seed < 0 or not np.isfinite(value):
        return None, "the seed must be >= 0 and the clamp value a finite number"
    prime = prime or ""
    if len(prime) > MAX_PRIME:
        return None, f"the priming text is {len(prime)} characters; the limit is {MAX_PRIME}"
    unit = view["unit"]
    try:
        plain = sample(model, length, prime=prime, temperature=temperature, seed=seed)
        clamped = sample(model, length, prime=prime, temperature=temperature, seed=seed, clamp={unit: value})
    except RnnvizError as e:
        return None, str(e)
    return [
        html.Div([html.B("unclamped"), html.Pre(prime + plain)]),
        html.Div([html.B(f"{unit} clamped to {value:g}"), html.Pre(prime + clamped)]),
    ], ""


# --- wiring ---

# In the browser: draw the window's characters as spans. textContent makes every character plain text (no
# HTML parsing); #text has no React children, so React never touches the nodes made here. A highlighted
# character (search hit, jump target, match) is scrolled into the middle of the view.
DRAW_JS = """
function(d) {
    var t = document.getElementById("text");
    if (!d || !t) { return [window.dash_clientside.no_update, window.dash_clientside.no_update]; }
    var frag = document.createDocumentFragment(), first = null;
    for (var i = 0; i < d.chars.length; i++) {
        var s = document.createElement("span");
        s.textContent = d.chars[i];
        if (d.cls[i]) { s.className = d.cls[i]; }
        s.title = d.tips[i];
        if (first === null && / hl|^hl/.test(d.cls[i])) { first = s; }
        frag.appendChild(s);
    }
    t.replaceChildren(frag);
    t.scrollTop = first ? first.offsetTop - t.offsetTop - t.clientHeight / 2 : 0;
    return [d.start + ":" + d.stop, Date.now()];
}
"""

# In the browser: report a mouse selection inside the text view (as offsets into the window, which the
# server turns into positions), and show the hovered character's details in the bar under the text.
_LISTEN_JS = """
function(_) {
    if (window.rnnvizListening) { return window.dash_clientside.no_update; }
    window.rnnvizListening = true;
    function index(t, node, offset, isEnd) {
        if (node === t) { return isEnd ? offset - 1 : offset; }
        while (node && node.parentNode !== t) { node = node.parentNode; }
        if (!node) { return null; }
        var i = Array.prototype.indexOf.call(t.children, node);
        return (isEnd && offset === 0) ? i - 1 : i;
    }
    document.addEventListener("mouseup", function() {
        var t = document.getElementById("text"), sel = window.getSelection();
        if (!t || !sel || sel.isCollapsed || sel.rangeCount === 0) { return; }
        var r = sel.getRangeAt(0);
        if (!t.contains(r.startContainer) || !t.contains(r.endContainer)) { return; }
        var a = index(t, r.startContainer, r.startOffset, false), b = index(t, r.endContainer, r.endOffset, true);
        if (a === null || b === null || b < a) { return; }
        window.dash_clientside.set_props("selection", {data: {a: a, b: b + 1, t: Date.now()}});
    });
    document.addEventListener("mouseover", function(ev) {
        var el = ev.target, t = document.getElementById("text");
        if (t && el && el.parentNode === t && el.title) {
            window.dash_clientside.set_props("hover", {children: el.title});
        }
    });
    return true;
}
"""


def _triggered() -> tuple[str | None, object]:
    """(id of the control that fired, its value); dict ids of table rows become "unit-row"/"match-row"."""
    tid = ctx.triggered_id
    if tid is None:
        return None, None
    value = ctx.triggered[0]["value"] if ctx.triggered else None
    if isinstance(tid, dict):
        if not value:  # a table was (re)drawn: its rows appear with n_clicks 0, nobody clicked
            raise PreventUpdate
        return tid["type"], tid["index"]
    return tid, value


def register(app, stores: StoreSet, window: int = WINDOW) -> None:
    """Attach every callback to ``app``."""

    nav_inputs = {
        "url": "search", "store-pick": "value", "layer-pick": "value", "kind-pick": "value",
        "index-pick": "value", "unit-prev": "n_clicks", "unit-next": "n_clicks", "cmp-input": "value",
        "page-prev": "n_clicks", "page-next": "n_clicks", "jump-go": "n_clicks", "jump-input": "n_submit",
        "find-go": "n_clicks", "find-input": "n_submit", "feature-pick": "value", "regex-input": "n_submit",
        "rank-go": "n_clicks",
    }

    @app.callback(
        Output("view", "data"), Output("url", "search"), Output("store-pick", "value"),
        Output("layer-pick", "options"), Output("layer-pick", "value"), Output("kind-pick", "options"),
        Output("kind-pick", "value"), Output("index-pick", "value"), Output("index-pick", "max"),
        Output("cmp-input", "value"), Output("feature-pick", "value"), Output("regex-input", "value"),
        Output("status", "children"),
        [Input(k, p) for k, p in nav_inputs.items()],
        Input({"type": "unit-row", "index": ALL}, "n_clicks"),
        Input({"type": "match-row", "index": ALL}, "n_clicks"),
        State("view", "data"), State("feature-pick", "value"), State("regex-input", "value"),
        State("jump-input", "value"), State("find-input", "value"),
    )
    def _navigate(*args):
        view, feature_pick, regex, jump, find = args[-5:]
        trigger, value = _triggered()
        if trigger == "url":
            value = args[0]
        elif trigger is None:
            value = args[0]
        try:
            new, msg = navigate(stores, view, trigger, value, feature_pick=feature_pick, regex=regex,
                                jump=jump, find=find, window=window)
        except RnnvizError as e:
            new, msg = clean(view, stores, window), str(e)
        c = controls(stores, new)
        if view:  # leave unchanged controls alone: no re-render, and no callbacks downstream of them
            before = controls(stores, clean(view, stores, window))
            c = {k: (no_update if before[k] == v else v) for k, v in c.items()}
        return (new, c["query"], c["store"], c["layers"], c["layer"], c["kinds"], c["kind"], c["index"],
                c["index_max"], c["cmp"], c["feature_pick"], c["regex"], msg)

    @app.callback(
        Output("focus", "data"), Input("view", "data"), State("focus", "data"),
    )
    def _focus(view, focus):
        # Only what the slower panels depend on; unchanged on paging, so they do not recompute.
        new = {k: view[k] for k in ("store", "unit", "feature")} if view else None
        if new == focus:
            raise PreventUpdate
        return new

    @app.callback(
        Output("window-data", "data"), Output("window-label", "children"), Output("legend", "children"),
        Input("view", "data"),
    )
    def _render(view):
        if not view:
            raise PreventUpdate
        return render_window(stores, clean(view, stores, window), window)

    @app.callback(Output("trace", "figure"), Input("drawn", "data"), State("view", "data"))
    def _trace(_, view):
        # Asked for once the text is drawn: redrawing this figure blocks the browser for ~100 ms, and the
        # text should not wait for it.
        if not view:
            raise PreventUpdate
        return trace(stores, clean(view, stores, window), window)

    @app.callback(Output("rank-table", "children"), Output("rank-msg", "children"), Input("focus", "data"))
    def _rank(focus):
        if not focus:
            raise PreventUpdate
        return rank_units(stores, clean(focus, stores, window))

    @app.callback(Output("hist", "figure"), Input("focus", "data"))
    def _hist(focus):
        if not focus:
            raise PreventUpdate
        return histogram(stores, clean(focus, stores, window))

    @app.callback(Output("sat", "figure"), Input("store-pick", "value"))
    def _sat(i):
        if i is None:
            raise PreventUpdate
        return saturation(stores, int(i))

    @app.callback(Output("gradflow", "figure"), Output("status", "children", allow_duplicate=True),
                  Input("gradflow-go", "n_clicks"), prevent_initial_call=True)
    def _gradflow(_):
        return gradflow(stores)

    @app.callback(
        Output("sel-a", "value"), Output("sel-b", "value"), Output("sel-tables", "children"),
        Output("match-table", "children"), Output("sel-msg", "children"), Output("tabs", "value"),
        Input("selection", "data"), Input("sel-go", "n_clicks"),
        State("sel-a", "value"), State("sel-b", "value"), State("sel-thr", "value"), State("view", "data"),
        prevent_initial_call=True,
    )
    def _select(selection, _, a, b, threshold, view):
        view = clean(view, stores, window)
        if ctx.triggered_id == "selection":
            try:  # offsets into the drawn window, from the page's script
                a, b = view["start"] + int(selection["a"]), view["start"] + int(selection["b"])
            except (TypeError, ValueError, KeyError):
                raise PreventUpdate from None
        tables, matches, msg = select_range(stores, view, a, b, threshold)
        return a, b, tables, matches, msg, "sel"  # show the answer even if another tab was open

    @app.callback(
        Output("smp-out", "children"), Output("smp-msg", "children"),
        Input("smp-go", "n_clicks"),
        State("smp-prime", "value"), State("smp-length", "value"), State("smp-temp", "value"),
        State("smp-seed", "value"), State("smp-value", "value"), State("view", "data"),
        prevent_initial_call=True,
    )
    def _sample(_, prime, length, temperature, seed, value, view):
        return sample_pair(stores, clean(view, stores, window), prime, length, temperature, seed, value)

    app.clientside_callback(
        DRAW_JS, Output("text", "data-drawn"), Output("drawn", "data"), Input("window-data", "data")
    )
    app.clientside_callback(_LISTEN_JS, Output("js-init", "data"), Input("text", "id"))
