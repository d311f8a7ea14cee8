"""rnnviz: train character-level RNNs and find the cells inside them.

The public API, imported lazily so that ``import rnnviz`` stays fast (no Dash, no pandas until used)::

    model = rnnviz.load_checkpoint("sample_models/shakespeare-lstm-2x128")
    store = rnnviz.record(model, text, out="store/")
    store = rnnviz.record(my_lstm_lm, ids, out="lm/", vocab=words)   # your own nn.Module (docs/own-model.md)
    store = rnnviz.open_store("store/")
    rnnviz.find_cells(store, "in_quote", top=10)
    rnnviz.find_similar(store, 5299, 5338)      # the cells that mark a selection, and where else
    rnnviz.export_html(store, ["1:c:17"], "cell.html")
    rnnviz.store_from_arrays(words, {"0:h": h, "0:c": c}, out="s/")   # any model's states, per token
    rnnviz.import_lstmvis("states.h5", "train.h5", "words.dict", out="s/")   # LSTMVis's files, and back:
    rnnviz.export_lstmvis(store, "lstmvis_data/s")                           # states.h5, words.h5/.dict, lstm.yml
    rnnviz.ngram_loss(text, "test")             # the paper's 20-gram baseline on the same split
    rnnviz.emergence("runs/wp", text, ["in_quote"])   # when each cell appears (--snapshot-every runs)
    rnnviz.serve(store, jupyter_mode="inline")   # the dashboard in a notebook cell
"""

from importlib import import_module

__version__ = "0.1.0"

_API = {
    "RnnvizError": "errors",
    "Vocab": "model.vocab",
    "read_text": "model.data",
    "CharRNN": "model.charrnn",
    "ModelConfig": "model.charrnn",
    "load_checkpoint": "model.checkpoint",
    "save_checkpoint": "model.checkpoint",
    "TrainConfig": "model.settings",
    "train": "model.trainer",
    "evaluate": "model.trainer",
    "ngram_loss": "model.ngram",
    "sample": "model.sampling",
    "record": "recording.recorder",
    "open_store": "store.reader",
    "write_store": "store.writer",
    "store_from_arrays": "store.arrays",
    "import_lstmvis": "store.lstmvis",
    "export_lstmvis": "store.lstmvis",
    "FEATURES": "analysis.features",
    "compute_feature": "analysis.features",
    "find_cells": "analysis.ranking",
    "ablate": "analysis.causal",
    "gate_saturation": "analysis.evidence",
    "gradient_flow": "analysis.causal",
    "explain": "analysis.explain",
    "top_contexts": "analysis.explain",
    "score_rule": "analysis.rule_score",
    "simulate": "analysis.rules",
    "export_html": "views.export",
    "emergence": "analysis.emergence",
    "emergence_figure": "analysis.emergence",
    "list_snapshots": "model.snapshots",
    "find_similar": "analysis.similar",
    "serve": "views.dashboard.notebook",
}

__all__ = sorted(_API)


def __dir__() -> list[str]:
    """The public API as well as the module's own names, so that tab completion sees what is lazy."""
    return sorted(set(globals()) | set(_API))


def __getattr__(name: str):
    if name in _API:
        obj = getattr(import_module(f".{_API[name]}", __name__), name)
        globals()[name] = obj  # cache: the next access does not come here
        return obj
    raise AttributeError(f"module 'rnnviz' has no attribute {name!r}")
