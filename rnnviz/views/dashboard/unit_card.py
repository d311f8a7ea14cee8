"""The Unit tab: one card for the view's unit, what a researcher checks before believing an explanation.

- its explanation (:func:`rnnviz.explain` for that unit, or the Catalog's row when the catalog is computed) with
  its held-out score and 95% interval (:func:`rnnviz.analysis.rule_score.score_rule`, the rule as chosen);
- the unit and the rule's simulated values in the unit's units, two lines over a window around its peak;
- the histogram of its values;
- contexts coloured by the unit as the text view colours it (the same classes, :func:`..textview.render`):
  its top activations, random rows and one from each decile (:func:`rnnviz.analysis.explain.top_contexts`,
  seeded), the character read outlined;
- **score your own rule**: a rule of ``explain``'s language or a regex ``re:PATTERN``, typed then Enter:
  its held-out score and interval against the unit, its values drawn over the window; a bad rule is a message;
- **ablation on demand** (:func:`rnnviz.analysis.causal.ablate`, zeroed, against random units of its layer
  and kind) when the store's checkpoint is reachable: it runs off the request (:class:`..jobs.Jobs`) and the
  page polls its progress, then shows the loss change with its interval and p-value.

Hooked into the page with one tab in ``layout.py``, one call in ``app.py`` and ``"unit"`` in ``state.TABS``.
"""

from __future__ import annotations

import plotly.graph_objects as go
from dash import Input, Output, State, dcc, html, no_update
from dash.exceptions import PreventUpdate

from rnnviz.analysis.causal import ablate
from rnnviz.analysis.explain import explain, top_contexts
from rnnviz.analysis.rule_score import predicted, rule_values, score_rule
from rnnviz.errors import RnnvizError
from rnnviz.views.colours import unit_scale
from rnnviz.views.dashboard import figures
from rnnviz.views.dashboard.jobs import DONE, FAILED, Jobs
from rnnviz.views.dashboard.state import View
from rnnviz.views.dashboard.stores import StoreSet
from rnnviz.views.dashboard.textview import render
from rnnviz.views.display import sign_symbol

CONTEXTS = {"top": 5, "random": 5, "per_decile": 1, "context": 20, "seed": 0}  # top_contexts' arguments
TRACK = 300  # rows drawn around the unit's peak
ABLATE_CHARS, ABLATE_DRAWS = 5_000, 50  # the first characters of the store's text; random-unit draws (p >= 1/51)
POLL_MS = 400  # how often the page asks how far an ablation is
RULE_HELP = ('a rule of explain\'s language (feature:in_quote, feature:column@lag2, prev:"th", class:digit, '
             'since:"\\n", depth:"(",")", A & B) or a regex re:PATTERN; Enter scores it')


def panel() -> html.Div:
    return html.Div([
        html.P("The unit colouring the text: its explanation, chosen on one half of the text and scored (Pearson r, "
               "95% block-bootstrap interval) on the other; the rule's values beside the unit's; contexts coloured "
               "as the text is (the character read outlined); its ablation.", className="note"),
        dcc.Loading(html.Div(id="card-head"), type="dot"),
        html.Div([
            dcc.Input(id="card-rule", type="text", debounce=True, placeholder="your rule, e.g. feature:in_quote or "
                      're:"[^"]*"', style={"width": "300px"}),
            html.Button("Score", id="card-score-go"),
        ], className="row"),
        html.Div(RULE_HELP, className="note colhelp"),
        html.Div(id="card-score", className="note"),
        figures_graph("card-track", 240),
        figures_graph("card-hist", 220),
        html.Div(id="card-contexts"),
        html.Div([html.Button("Ablate", id="card-ablate-go"), html.Span(id="card-ablate-note", className="note")],
                 className="row"),
        html.Div(id="card-ablate-progress"),
        html.Div(id="card-ablate-out"),
        dcc.Store(id="card-job"),
        dcc.Interval(id="card-poll", interval=POLL_MS, disabled=True),
    ])


def figures_graph(id_: str, height: int) -> dcc.Graph:
    return dcc.Graph(id=id_, figure=figures.loading_figure(height), config={"displaylogo": False})


# --- the explanation ---


def _catalog_row(stores: StoreSet, i: int, unit: str) -> dict | None:
    """The Catalog's row for ``unit`` when the catalog of store ``i`` is already computed (never computes it)."""
    if not stores.holds(("catalog", i)):
        return None
    try:
        rows = stores.cached(("catalog", i), _not_computed)
        row = next(r for r in rows if r.get("unit") == unit)
        return {"rule": row["rule"], "sign": int(row["_sign"] or 1), "coef": row["_coef"]}
    except (RnnvizError, StopIteration, KeyError, TypeError, ValueError):
        return None


def _not_computed():
    raise RnnvizError("the catalog is not computed")


def explanation(stores: StoreSet, i: int, unit: str) -> dict:
    """``{rule, sign, coef, explained, score: RuleScore}`` of ``unit``: the rule :func:`rnnviz.explain` gives it
    (its best rule when under the floor) scored with its interval (cached)."""

    def make() -> dict:
        store = stores[i]
        row = _catalog_row(stores, i, unit)
        if row is None or row["rule"] == "unexplained":  # the catalog keeps no best rule for those: explain has it
            r = explain(store, units=[unit], intervals=False).iloc[0]
            row = {"rule": r["best_rule"], "sign": int(r["sign"]), "coef": r["coef"], "explained": bool(r["explained"])}
        row.setdefault("explained", True)
        row["score"] = score_rule(store, unit, row["rule"], sign=row["sign"], coef=row["coef"]) if row["rule"] else None
        return row

    return stores.cached(("card-explain", i, unit), make)


def score_text(s, lead: str) -> str:
    """One line: the score, its interval, the AUROC of a 0/1 rule."""
    interval = f" [{s.score_lo:.3f}, {s.score_hi:.3f}]" if s.score_lo == s.score_lo else \
        " (no interval: under 10 blocks of 1,000 held-out rows)"
    auc = "" if s.auroc != s.auroc else f" · AUROC {s.auroc:.3f}"
    return (f"{lead}{s.explanation} ({s.rule}, sign {sign_symbol(s.sign)}): held-out r = {s.score:.3f}{interval}"
            f"{auc} on {s.held:,} rows")


def head(stores: StoreSet, i: int, unit: str) -> html.Div:
    e = explanation(stores, i, unit)
    store = stores[i]
    row = store.stats.loc[unit]
    stats = f"mean {row['mean']:.3g}, std {row['std']:.3g}, min {row['min']:.3g}, max {row['max']:.3g}"
    if e["score"] is None:
        return html.Div([html.B(unit), f" · {stats} · no rule found"], id="card-explained")
    lead = "explained: " if e["explained"] else "unexplained; closest rule: "
    return html.Div([html.B(unit), f" · {stats}", html.Br(), score_text(e["score"], lead)], id="card-explained")


# --- the track, the histogram, the contexts ---


def track(stores: StoreSet, i: int, unit: str, rule: str | None, line: list[float] | None,
          coef=None) -> go.Figure:
    """The unit and the rule in the unit's units over TRACK rows around the unit's strongest value."""
    store = stores[i]
    p = int(top_contexts(store, unit, top=1, per_decile=0)["pos"].iloc[0])
    a = max(0, min(p - TRACK // 2, store.length - TRACK))
    b = min(store.length, a + TRACK)
    x = list(range(a, b))
    fig = go.Figure(go.Scatter(x=x, y=store.window(a, b, [unit])[:, 0].astype(float).tolist(), name=unit,
                               line={"width": 1, "color": figures.UNIT_LINE}))
    if rule:
        v, _, _ = rule_values(store, rule, coef, timeout=stores.regex_timeout)
        y = predicted(v[a:b] if v.ndim == 1 else v[a:b] @ line[:2] + line[2], line)
        fig.add_trace(go.Scatter(x=x, y=y.tolist(), name=f"rule: {rule}", line={"width": 1, "color": "#d62728"}))
    fig.update_layout(margin={"l": 40, "r": 10, "t": 24, "b": 24}, height=240, font=figures.FONT,
                      title={"text": f"{unit} and the rule's values (in the unit's units)", "font": {"size": 12}},
                      legend={"orientation": "h", "y": -0.2})
    return fig


def histogram(stores: StoreSet, i: int, unit: str) -> go.Figure:
    values = stores[i].read([unit], sample=True)[:, 0]
    return figures.histogram_figure(unit, values, None, f"{len(values):,} rows")


def contexts(stores: StoreSet, view: View) -> html.Table:
    """The unit's contexts (:data:`CONTEXTS`), each coloured as the text view colours it: one span per run of
    characters with the same colour class, the row read outlined (``card-read``)."""
    store, unit = stores[view.store], view.unit
    scale = unit_scale(store, unit, view.range)
    df = top_contexts(store, unit, **CONTEXTS)
    k = CONTEXTS["context"]
    rows = []
    for r in df.itertuples(index=False):
        a, b = max(0, r.pos - k), min(store.length, r.pos + k + 1)
        d = render(store, view.replace(start=a, hl=(r.pos, r.pos + 1), cmp="", feature=""), b - a, scales=[scale])
        rows.append(html.Tr([html.Td(r.group), html.Td(f"{r.value:+.3f}"), html.Td(_spans(d), className="tv snip")],
                            className="card-ctx"))
    head_ = html.Thead(html.Tr([html.Th("where"), html.Th("value"), html.Th("context, coloured by the unit")]))
    return html.Table([head_, html.Tbody(rows)], className="rank")


def _spans(d: dict) -> list[html.Span]:
    """``render``'s characters and classes as spans, one per run of one class ("hl" marks the row read)."""
    out, run, cls = [], "", None
    for ch, c in zip(d["chars"], d["cls"], strict=True):
        ch = ch.replace("\n", "")  # one line per context: a line end stays as its ↵
        if c != cls and run:
            out.append(_span(run, cls))
            run = ""
        run, cls = run + ch, c
    if run:
        out.append(_span(run, cls))
    return out


def _span(text: str, cls: str) -> html.Span:
    names = cls.split()
    read = "hl" in names
    return html.Span(text, className=" ".join([n for n in names if n != "hl"] + (["card-read"] if read else [])),
                     style={"outline": "2px solid #000"} if read else None)


# --- your own rule ---


def own_rule(stores: StoreSet, view: View, rule) -> tuple[object, object, str]:
    """(the score's line, the track with the rule drawn, its class): a bad rule is a message, never an error."""
    i, unit = view.store, view.unit
    try:
        s = score_rule(stores[i], unit, rule, timeout=stores.regex_timeout)
        fig = track(stores, i, unit, s.rule, s.line)
    except RnnvizError as e:
        return f"Cannot score {rule!r}: {e}" if isinstance(rule, str) and rule.strip() else str(e), no_update, "msg"
    return score_text(s, "your rule: "), fig, "note"


# --- ablation ---


def ablation_note(stores: StoreSet, i: int) -> tuple[str, bool]:
    """(what "Ablate" does here, whether it can run): only with the store's checkpoint reachable."""
    store = stores[i]
    if store.meta.model is None:
        return "no ablation: this store was not recorded from an rnnviz model (ablation runs the model)", False
    if store.checkpoint_path is None:
        return "no ablation: the store's checkpoint is not reachable (moved, or its weights changed)", False
    n = min(ABLATE_CHARS, store.length)
    return (f" zero the unit inside the model over the first {n:,} characters, beside {ABLATE_DRAWS} random units "
            "of its layer and kind (every other one when it has fewer; rnnviz ablate runs more)"), True


def ablation_work(stores: StoreSet, i: int, unit: str):
    """The job: ``ablate`` of ``unit`` zeroed, its summary as a dict."""

    def work(progress) -> dict:
        model = stores.model(i)
        if model is None:
            raise RnnvizError("the store's checkpoint is not reachable")
        text = model.vocab.prepare(stores[i].text[:ABLATE_CHARS], "skip")
        return ablate(model, text, unit, random=ABLATE_DRAWS, progress=progress).summary()

    return work


def ablation_result(s: dict) -> html.Div:
    """The loss change with its interval, beside the random units' (p-value, effect size)."""
    def num(x, f=".4f"):
        return "n/a" if x is None else format(x, f)

    p = "n/a" if s["p"] is None else f"{s['p']:.3g}"
    interval = f"[{num(s['delta_lo'], '+.4f')}, {num(s['delta_hi'], '+.4f')}]" if s["delta_lo"] is not None else \
        "(no interval: under 10 blocks of 1,000 characters)"
    return html.Div([
        html.B(f"{', '.join(s['units'])} zeroed: "),
        f"loss {num(s['clean_loss'])} → {num(s['ablated_loss'])} nats/char, change {num(s['delta'], '+.4f')} "
        f"{interval} over {s['chars']:,} characters; "
        f"{s['random_draws']} random units of its layer and kind: mean change {num(s['random_delta_mean'], '+.4f')}, "
        f"{num(s['random_delta_at_least'], 'd')} hurt as much, p = {p}, effect size {num(s['effect_size'], '.2f')}",
    ], id="card-ablation", className="note")


def progress_bar(job: dict) -> html.Div:
    frac = job["done"] / job["total"] if job["total"] else 0.0
    return html.Div([html.Progress(value=str(round(frac * 100)), max="100"),
                     f" ablating: {frac:.0%} of the passes (clean, clamped, random units)"],
                    id="card-progress", className="note")


def draw(stores: StoreSet, focus, tab, colour_range, view) -> tuple:
    """Everything the card shows for the focus's unit, when its tab is open (the outputs of ``register``'s first
    callback)."""
    if not focus or tab != "unit":
        raise PreventUpdate
    view = View.clean({**(view if isinstance(view, dict) else {}), **focus, "range": colour_range}, stores)
    i, unit = view.store, view.unit
    try:
        e = explanation(stores, i, unit)
        fig = track(stores, i, unit, e["rule"], e["score"].line, e["coef"]) if e["score"] else \
            track(stores, i, unit, None, None)
        note, can = ablation_note(stores, i)
        return head(stores, i, unit), fig, histogram(stores, i, unit), contexts(stores, view), note, not can, \
            "", "", "", None, True  # another unit: a running ablation's poll stops (pressed again, it resumes)
    except RnnvizError as err:
        return str(err), *(no_update,) * 10


def start_ablation(jobs: Jobs, stores: StoreSet, clicks, focus) -> tuple:
    """(job id, poll disabled, progress, result): the job started (or the one already doing this unit)."""
    if not clicks or not focus:
        raise PreventUpdate
    view = View.clean(focus, stores)
    note, can = ablation_note(stores, view.store)
    if not can:
        return None, True, "", note
    job = jobs.start(("ablate", view.store, view.unit), ablation_work(stores, view.store, view.unit))
    return job, False, progress_bar(jobs.status(job)), ""


def poll(jobs: Jobs, job_id) -> tuple:
    """(progress, result, poll disabled) of the job the page follows."""
    job = jobs.status(job_id)
    if job is None:
        return "", "", True
    if job["state"] == DONE:
        return "", ablation_result(job["result"]), True
    if job["state"] == FAILED:
        return "", html.Div(f"ablation failed: {job['error']}", className="msg"), True
    return progress_bar(job), no_update, False


def register(app, stores: StoreSet) -> None:
    jobs = Jobs()
    dup = {"allow_duplicate": True}
    app.callback(
        Output("card-head", "children"), Output("card-track", "figure"), Output("card-hist", "figure"),
        Output("card-contexts", "children"), Output("card-ablate-note", "children"),
        Output("card-ablate-go", "disabled"), Output("card-score", "children"), Output("card-ablate-out", "children"),
        Output("card-ablate-progress", "children"), Output("card-job", "data"), Output("card-poll", "disabled"),
        Input("focus", "data"), Input("tabs", "value"), Input("range-pick", "value"), State("view", "data"),
    )(lambda focus, tab, colour_range, view: draw(stores, focus, tab, colour_range, view))
    app.callback(
        Output("card-score", "children", **dup), Output("card-track", "figure", **dup),
        Output("card-score", "className"),
        Input("card-rule", "n_submit"), Input("card-score-go", "n_clicks"),
        State("card-rule", "value"), State("focus", "data"), prevent_initial_call=True,
    )(lambda _, __, rule, focus: own_rule(stores, View.clean(focus, stores), rule) if focus else _skip())
    app.callback(
        Output("card-job", "data", **dup), Output("card-poll", "disabled", **dup),
        Output("card-ablate-progress", "children", **dup), Output("card-ablate-out", "children", **dup),
        Input("card-ablate-go", "n_clicks"), State("focus", "data"), prevent_initial_call=True,
    )(lambda clicks, focus: start_ablation(jobs, stores, clicks, focus))
    app.callback(
        Output("card-ablate-progress", "children", **dup), Output("card-ablate-out", "children", **dup),
        Output("card-poll", "disabled", **dup),
        Input("card-poll", "n_intervals"), State("card-job", "data"), prevent_initial_call=True,
    )(lambda _, job_id: poll(jobs, job_id))


def _skip():
    raise PreventUpdate
