"""The page: a unit picker across the top, the text view and its trace on the left, panels on the right
(hypotheses, select-to-find, the pattern view, plots, sampling). Component ids are the contract with the
``cb_*`` modules. The static style and the browser code are package files under ``assets/``."""

from __future__ import annotations

from dash import dcc, html

from rnnviz.analysis.features import FEATURES
from rnnviz.analysis.similar import THETA
from rnnviz.views.colours import RANGES
from rnnviz.views.dashboard import catalog, emergence_tab, overview, unit_card
from rnnviz.views.dashboard.figures import loading_figure
from rnnviz.views.dashboard.state import DEFAULT_RANGE
from rnnviz.views.dashboard.stores import StoreSet
from rnnviz.views.dashboard.textview import css


def index_string(title: str) -> str:
    """Dash's page template with the colour classes inlined (generated from :mod:`rnnviz.views.colours`; the rest
    of the style comes from ``assets/rnnviz.css``)."""
    return (
        "<!DOCTYPE html><html><head>{%metas%}<title>" + title + "</title>{%favicon%}{%css%}"
        "<style>" + css() + "</style></head><body>{%app_entry%}<footer>{%config%}{%scripts%}"
        "{%renderer%}</footer></body></html>"
    )


def _store_label(stores: StoreSet, i: int) -> str:
    s = stores[i]
    rows = "tokens" if s.is_tokens else "chars"
    return f"{stores.names[i]} · {s.cell} {len(s.layers)}×{s.hidden} · {s.length:,} {rows}"


def graph(id_: str, height: int = 160, **config) -> dcc.Graph:
    """A plot that says "loading…" until its first figure arrives."""
    return dcc.Graph(id=id_, figure=loading_figure(height), config={"displaylogo": False, **config})


def _num(id_: str, value, width: int = 80, **kw) -> dcc.Input:
    return dcc.Input(id=id_, type="number", value=value, debounce=True, style={"width": f"{width}px"}, **kw)


def hypotheses_panel() -> html.Div:
    options = [{"label": f"{f.name} ({f.domain}, {f.type})", "value": f.name, "title": f.summary}
               for f in FEATURES.values()]
    return html.Div([
        html.Div([
            dcc.Dropdown(id="feature-pick", options=options, placeholder="built-in feature", className="pick-wide",
                         clearable=True),
        ], className="row"),
        html.Div([
            dcc.Input(id="regex-input", type="text", placeholder='or a regex, e.g. "[^"]*"', debounce=True,
                      style={"width": "250px"}),
            html.Button("Rank units", id="rank-go"),
        ], className="row"),
        html.Div(id="rank-msg", className="msg"),
        dcc.Loading(html.Div(id="rank-table"), type="dot"),
        html.P("Click a row to colour the text by that unit; the feature is drawn as a bar under the text.",
               className="note"),
    ])


def selection_panel() -> html.Div:
    return html.Div([
        html.P("Tick \"select to find\" above the text and select some text with the mouse (or type a range): the "
               "cells on inside it (mostly, 2 characters of slack at each edge) and off at its edges, then where they "
               "switch on together.", className="note"),
        html.Div([
            html.Label("from"), _num("sel-a", None, 95, min=0),
            html.Label("to"), _num("sel-b", None, 95, min=1),
            html.Label("θ (σ)"), _num("sel-thr", THETA, 60, step=0.25),
            html.Button("Find units", id="sel-go"),
        ], className="row"),
        html.Div(id="sel-msg", className="msg"),
        dcc.Loading(html.Div(id="sel-tables"), type="dot"),
        dcc.Loading(html.Div(id="match-table"), type="dot"),
    ])


def pattern_panel() -> html.Div:
    return html.Div([
        html.P("LSTMVis's pattern view: the selection's cells as lines over the window. The set stays as it is "
               "while you drag the dashed θ line (or type θ): θ only says which of them are on. Click a line to drop "
               "its cell, a grey line (the selection's next-best cells) to add it, or type the set; then search.",
               className="note"),
        html.Div([
            html.Label("cells"),
            dcc.Input(id="pat-cells", type="text", debounce=True, placeholder="e.g. 1:c:12, 0:c:40",
                      style={"width": "260px"}),
            html.Label("θ (σ)"), _num("pat-thr", THETA, 60, step="any", min=0),
            html.Button("Search", id="pat-go"),
        ], className="row"),
        html.Div(id="pat-msg", className="msg"),
        graph("pattern", 300, edits={"shapePosition": True}),  # the θ line is dragged
        dcc.Store(id="pat-drawn"),  # the cells drawn, in trace order: what a click on a line names
        html.Div(id="pat-onset", className="note"),
        dcc.Loading(html.Div(id="pat-matches"), type="dot"),
    ])


def plots_panel() -> html.Div:
    return html.Div([
        graph("hist", 300),
        graph("sat", 380),
        html.Div([html.Button("Compute gradient flow", id="gradflow-go"),
                  html.Span(" of every loaded store's model (over its first characters)", className="note")],
                 className="row", id="gradflow-row"),
        dcc.Loading(dcc.Graph(id="gradflow", config={"displaylogo": False}), type="dot"),
    ])


def sampling_panel() -> html.Div:
    return html.Div([
        html.P("Generate with the current unit clamped to a value, beside the same seed unclamped.", className="note"),
        dcc.Textarea(id="smp-prime", placeholder="priming text (optional)", style={"width": "100%", "height": "3em"}),
        html.Div([
            html.Label("length"), _num("smp-length", 300, 70, min=1, max=2000),
            html.Label("temperature"), _num("smp-temp", 0.8, 60, min=0.05, step=0.05),
            html.Label("seed"), _num("smp-seed", 0, 60, min=0),
            html.Label("clamp to"), _num("smp-value", 1.0, 70, step=0.1),
            html.Button("Generate", id="smp-go"),
        ], className="row"),
        html.Div(id="smp-msg", className="msg"),
        dcc.Loading(html.Div(id="smp-out", className="samples"), type="dot"),
    ])


def build(stores: StoreSet) -> html.Div:
    """The whole page; every control starts empty and is filled from the URL by the first callback."""
    return html.Div(id="app", children=[
        *browser_state(),
        unit_bar(stores),
        html.Div(id="store-info"),  # what the store is, where it is not one of our char stores (callbacks.info)
        html.Div(id="status", className="msg"),
        html.Div(id="main", children=[text_column(), html.Div(id="right", children=[panel_tabs()])]),
    ])


def browser_state() -> list:
    """The URL and the stores the callbacks share in the browser (the view, the selection, the window's data)."""
    return [
        dcc.Location(id="url", refresh=False),
        *(dcc.Store(id=id_) for id_ in ("view", "focus", "rank-focus", "text-view", "selection", "sel-view", "js-init",
                                        "window-data", "drawn")),
    ]


def unit_bar(stores: StoreSet) -> html.Div:
    """The row across the top, one line at 1280 pixels: store, layer, kind and unit pickers, the compare unit, the
    colour range."""
    return html.Div([
        html.B("rnnviz", style={"fontSize": "15px"}),
        dcc.Dropdown(id="store-pick", options=[{"label": _store_label(stores, i), "value": i}
                                               for i in range(len(stores))],
                     clearable=False, className="pick-store"),
        html.Label("layer"), dcc.Dropdown(id="layer-pick", clearable=False, className="pick"),
        html.Label("kind"), dcc.Dropdown(id="kind-pick", clearable=False, className="pick"),
        html.Label("unit"), _num("index-pick", 0, 80, min=0),
        html.Button("◀", id="unit-prev", title="previous unit"),
        html.Button("▶", id="unit-next", title="next unit"),
        html.Label("compare"),
        dcc.Input(id="cmp-input", type="text", placeholder="e.g. 1:c:5", debounce=True, style={"width": "90px"}),
        html.Label("colours"),
        dcc.Dropdown(id="range-pick", options=[{"label": v, "value": k} for k, v in RANGES.items()],
                     value=DEFAULT_RANGE, clearable=False, searchable=False, className="pick-mid"),
    ], className="row topbar")


def text_column() -> html.Div:
    """The left column: window navigation and find, the legend, the coloured text, its hover panel and trace."""
    return html.Div(id="left", children=[
        html.Div([
            html.Button("◀ prev", id="page-prev"),
            html.Button("next ▶", id="page-next"),
            html.Label("go to"), _num("jump-input", None, 100, min=0),
            html.Button("Go", id="jump-go"),
            html.Label("find"),
            dcc.Input(id="find-input", type="text", debounce=True, placeholder="text", style={"width": "140px"}),
            html.Button("Next match", id="find-go"),
            # Off: a selection only selects (to copy text); on: it is searched for (rnnviz.js reads the box).
            dcc.Checklist(id="sel-mode", options=[{"label": " select to find", "value": "on"}], value=[],
                          className="sel-mode"),
            html.Span(id="window-label", className="note"),
        ], className="row"),
        html.Div(id="legend"),
        html.Div(id="text", className="tv"),
        html.Div(id="hover"),
        # The trace's graph is mounted once the text is drawn (cb_text): Plotly (4.8 MB of script
        # to evaluate) is then loaded after the coloured text, not before it.
        html.Div(id="trace-box", style={"minHeight": "330px"}),
        dcc.Store(id="trace-wait", data=loading_figure(330)),
    ])


def panel_tabs() -> dcc.Tabs:
    """The right column's tabs, one panel each."""
    return dcc.Tabs(id="tabs", value="hyp", children=[
        dcc.Tab(label="Hypotheses", value="hyp", children=hypotheses_panel()),
        dcc.Tab(label="Select to find", value="sel", children=selection_panel()),
        dcc.Tab(label="Pattern", value="pattern", children=pattern_panel()),
        dcc.Tab(label="Overview", value="overview", children=overview.panel()),
        dcc.Tab(label="Plots", value="plots", children=plots_panel()),
        dcc.Tab(label="Sample", value="sample", id="tab-sample", children=sampling_panel()),
        dcc.Tab(label="Emergence", value="emerge", id="tab-emerge", children=emergence_tab.panel()),
        dcc.Tab(label="Catalog", value="catalog", children=catalog.panel()),
        dcc.Tab(label="Unit", value="unit", children=unit_card.panel()),
    ])
