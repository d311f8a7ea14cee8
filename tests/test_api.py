import importlib
import inspect
import subprocess
import sys

import rnnviz


def test_public_api_names_are_functions_and_classes_even_after_submodule_imports():
    for module in ("recorder", "trainer", "history"):  # named apart from the functions they hold
        importlib.import_module(f"rnnviz.{module}")
    for name in rnnviz.__all__:
        obj = getattr(rnnviz, name)
        assert not inspect.ismodule(obj), name
        assert getattr(rnnviz, name) is obj  # the second access gives the same object
    assert rnnviz.record.__module__ == "rnnviz.recorder" and callable(rnnviz.record)
    assert rnnviz.train.__module__ == "rnnviz.trainer" and callable(rnnviz.train)
    assert rnnviz.emergence.__module__ == "rnnviz.history" and callable(rnnviz.emergence)


def test_import_rnnviz_is_lazy():
    """``import rnnviz`` loads none of torch, pandas or Dash until a name that needs them is used."""
    code = "import sys, rnnviz; print(sorted(m for m in ('torch', 'pandas', 'dash') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
