"""rnnviz: train character-level RNNs and find the cells inside them.

The public API, imported lazily so that ``import rnnviz`` stays fast (no Dash, no pandas until used)::

    model = rnnviz.load_checkpoint("sample_models/shakespeare-lstm-2x128")
    store = rnnviz.record(model, text, out="store/")
    store = rnnviz.open_store("store/")
    rnnviz.find_cells(store, "in_quote", top=10)
    rnnviz.find_similar(store, 5299, 5338)      # the cells that mark a selection, and where else
    rnnviz.export_html(store, ["1:c:17"], "cell.html")
    rnnviz.ngram_loss(text, "test")             # the paper's 20-gram baseline on the same split
    rnnviz.emergence("runs/wp", text, ["in_quote"])   # when each cell appears (--snapshot-every runs)
    rnnviz.serve(store, jupyter_mode="inline")   # the dashboard in a notebook cell
"""

from importlib import import_module

__version__ = "0.1.0"

_API = {
    "RnnvizError": "errors",
    "Vocab": "vocab",
    "read_text": "data",
    "CharRNN": "models",
    "ModelConfig": "models",
    "load_checkpoint": "checkpoint",
    "save_checkpoint": "checkpoint",
    "TrainConfig": "trainer",
    "train": "trainer",
    "evaluate": "trainer",
    "ngram_loss": "ngram",
    "sample": "sampling",
    "record": "recorder",
    "open_store": "store",
    "write_store": "storewriter",
    "FEATURES": "features",
    "compute_feature": "features",
    "find_cells": "discover",
    "ablate": "causal",
    "gate_saturation": "evidence",
    "gradient_flow": "causal",
    "explain": "explainer",
    "top_contexts": "explainer",
    "simulate": "rules",
    "export_html": "export",
    "emergence": "history",
    "emergence_figure": "history",
    "list_snapshots": "snapshots",
    "find_similar": "similar",
    "serve": "dashboard.notebook",
}

__all__ = sorted(_API)


def __getattr__(name: str):
    if name in _API:
        obj = getattr(import_module(f".{_API[name]}", __name__), name)
        globals()[name] = obj  # cache: the next access does not come here
        return obj
    raise AttributeError(f"module 'rnnviz' has no attribute {name!r}")
