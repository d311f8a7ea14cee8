"""The page: a unit picker across the top, the text view and its trace on the left, panels on the right
(hypotheses, select-to-find, plots, sampling). Component ids are the contract with :mod:`.callbacks`."""

from __future__ import annotations

from dash import dcc, html

from ..features import FEATURES
from . import catalog, emergence_tab
from .stores import StoreSet
from .textview import css

# Page-wide style. The text view is monospace with whitespace kept; the compare bar sits over each
# character (border-top) and the feature bar under it (border-bottom), so both fit in the line gap.
CSS = (
    "body{font:13px/1.4 system-ui,-apple-system,'Segoe UI',sans-serif;color:#222;margin:0}"
    "#app{display:flex;flex-direction:column;gap:6px;padding:8px 12px}"
    ".row{display:flex;flex-wrap:wrap;align-items:center;gap:6px}"
    ".row label{color:#555}.pick{width:130px}.pick-wide{width:330px}"
    "input[type=number],input[type=text]{font:inherit;padding:3px 5px;border:1px solid #bbb;border-radius:3px}"
    "button{font:inherit;padding:3px 9px;border:1px solid #999;border-radius:3px;background:#f6f6f6;cursor:pointer}"
    "button:hover{background:#e8e8e8}"
    "#main{display:flex;gap:14px;align-items:flex-start}#left{flex:3;min-width:0}#right{flex:2;min-width:380px}"
    "#text{font:13px/2.1 ui-monospace,Menlo,Consolas,'DejaVu Sans Mono',monospace;white-space:pre-wrap;"
    "overflow-wrap:anywhere;tab-size:4;border:1px solid #ddd;padding:6px 8px;height:52vh;overflow:auto;color:#000}"
    "#text span{border-top:3px solid transparent;border-bottom:3px solid transparent}"
    "#text span:hover{outline:1px solid #000}#text .hl{outline:2px solid #000;outline-offset:-1px}"
    "#text .nan{background:repeating-linear-gradient(45deg,#eee,#eee 2px,#fff 2px,#fff 4px)}"
    "#hover{font:12px ui-monospace,Menlo,Consolas,monospace;white-space:pre;color:#333;min-height:3.3em;"
    "background:#fafafa;border:1px solid #eee;padding:2px 6px}"
    ".legend{color:#555}.legend .bar{display:inline-block;border:1px solid #ccc;line-height:0}"
    ".legend .bar i{display:inline-block;width:5px;height:12px}"
    ".msg{color:#a33;min-height:1.2em}.note{color:#666}"
    "table.rank{border-collapse:collapse;width:100%;font-size:12px}"
    "table.rank td,table.rank th{padding:2px 6px;border-bottom:1px solid #eee;text-align:left}"
    "table.rank tbody tr{cursor:pointer}table.rank tbody tr:hover{background:#eef4ff}"
    "table.rank td.snip{font-family:ui-monospace,Menlo,Consolas,monospace;white-space:pre}"
    ".samples{display:flex;gap:10px}.samples>div{flex:1;min-width:0}"
    ".samples pre{white-space:pre-wrap;border:1px solid #ddd;padding:6px;max-height:40vh;overflow:auto}"
)


def index_string(title: str) -> str:
    """Dash's page template with our style sheet inlined (the app needs no asset files)."""
    return (
        "<!DOCTYPE html><html><head>{%metas%}<title>" + title + "</title>{%favicon%}{%css%}"
        "<style>" + CSS + css() + "</style></head><body>{%app_entry%}<footer>{%config%}{%scripts%}"
        "{%renderer%}</footer></body></html>"
    )


def _store_label(stores: StoreSet, i: int) -> str:
    s = stores[i]
    return f"{stores.names[i]} · {s.cell} {len(s.layers)}×{s.hidden} · {s.length:,} chars"


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
        html.P("Select some text with the mouse (or type a range): the units on inside it and off around it, "
               "then other places where they switch on together.", className="note"),
        html.Div([
            html.Label("from"), _num("sel-a", None, 95, min=0),
            html.Label("to"), _num("sel-b", None, 95, min=1),
            html.Label("θ (σ)"), _num("sel-thr", 1.0, 60, step=0.25),
            html.Button("Find units", id="sel-go"),
        ], className="row"),
        html.Div(id="sel-msg", className="msg"),
        dcc.Loading(html.Div(id="sel-tables"), type="dot"),
        dcc.Loading(html.Div(id="match-table"), type="dot"),
    ])


def plots_panel() -> html.Div:
    return html.Div([
        dcc.Graph(id="hist", config={"displaylogo": False}),
        dcc.Graph(id="sat", config={"displaylogo": False}),
        html.Div([html.Button("Compute gradient flow", id="gradflow-go"),
                  html.Span(" of every loaded store's model (over its first characters)", className="note")],
                 className="row"),
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
        dcc.Location(id="url", refresh=False),
        dcc.Store(id="view"),
        dcc.Store(id="focus"),
        dcc.Store(id="selection"),
        dcc.Store(id="js-init"),
        dcc.Store(id="window-data"),
        dcc.Store(id="drawn"),
        html.Div([
            html.B("rnnviz", style={"fontSize": "15px"}),
            dcc.Dropdown(id="store-pick", options=[{"label": _store_label(stores, i), "value": i}
                                                   for i in range(len(stores))],
                         clearable=False, className="pick-wide"),
            html.Label("layer"), dcc.Dropdown(id="layer-pick", clearable=False, className="pick"),
            html.Label("kind"), dcc.Dropdown(id="kind-pick", clearable=False, className="pick"),
            html.Label("unit"), _num("index-pick", 0, 80, min=0),
            html.Button("◀", id="unit-prev", title="previous unit"),
            html.Button("▶", id="unit-next", title="next unit"),
            html.Label("compare"),
            dcc.Input(id="cmp-input", type="text", placeholder="e.g. 1:c:5", debounce=True, style={"width": "90px"}),
        ], className="row"),
        html.Div(id="status", className="msg"),
        html.Div(id="main", children=[
            html.Div(id="left", children=[
                html.Div([
                    html.Button("◀ prev", id="page-prev"),
                    html.Button("next ▶", id="page-next"),
                    html.Label("go to"), _num("jump-input", None, 100, min=0),
                    html.Button("Go", id="jump-go"),
                    html.Label("find"),
                    dcc.Input(id="find-input", type="text", debounce=True, placeholder="text",
                              style={"width": "140px"}),
                    html.Button("Next match", id="find-go"),
                    html.Span(id="window-label", className="note"),
                ], className="row"),
                html.Div(id="legend"),
                html.Div(id="text", className="tv"),
                html.Div(id="hover"),
                dcc.Graph(id="trace", config={"displaylogo": False}),
            ]),
            html.Div(id="right", children=[
                dcc.Tabs(id="tabs", value="hyp", children=[
                    dcc.Tab(label="Hypotheses", value="hyp", children=hypotheses_panel()),
                    dcc.Tab(label="Select to find", value="sel", children=selection_panel()),
                    dcc.Tab(label="Plots", value="plots", children=plots_panel()),
                    dcc.Tab(label="Sample", value="sample", children=sampling_panel()),
                    dcc.Tab(label="Emergence", value="emerge", children=emergence_tab.panel()),
                    dcc.Tab(label="Catalog", value="catalog", children=catalog.panel()),
                ]),
            ]),
        ]),
    ])
