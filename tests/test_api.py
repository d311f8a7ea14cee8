import importlib
import inspect
import subprocess
import sys

import rnnviz


def test_public_api_names_are_functions_and_classes_even_after_submodule_imports():
    for module in ("recording.recorder", "model.trainer", "analysis.emergence"):  # named apart from their functions
        importlib.import_module(f"rnnviz.{module}")
    for name in rnnviz.__all__:
        obj = getattr(rnnviz, name)
        assert not inspect.ismodule(obj), name
        assert getattr(rnnviz, name) is obj  # the second access gives the same object
    assert rnnviz.record.__module__ == "rnnviz.recording.recorder" and callable(rnnviz.record)
    assert rnnviz.train.__module__ == "rnnviz.model.trainer" and callable(rnnviz.train)
    assert rnnviz.emergence.__module__ == "rnnviz.analysis.emergence" and callable(rnnviz.emergence)


def test_tab_completion_sees_the_lazy_api():
    names = dir(rnnviz)
    assert set(rnnviz.__all__) <= set(names) and "__version__" in names
    assert {"write_store", "find_cells", "record", "open_store"} <= set(names)  # the old top-level names


def test_import_rnnviz_is_lazy():
    """``import rnnviz`` loads none of torch, pandas or Dash until a name that needs them is used."""
    code = "import sys, rnnviz; print(sorted(m for m in ('torch', 'pandas', 'dash') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_cli_start_up_loads_neither_pandas_nor_dash():
    """The CLI needs torch (training options) but not pandas or Dash until a command uses them."""
    code = "import sys, rnnviz.cli; print(sorted(m for m in ('pandas', 'dash') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_no_dashboard_view_imports_another_view():
    """Views depend on the library (and on the dashboard's shared modules), never on another view."""
    import ast
    from pathlib import Path

    folder = Path(rnnviz.__file__).parent / "views" / "dashboard" / "callbacks"
    views = sorted(p for p in folder.glob("*.py") if p.stem not in ("__init__", "shared"))
    assert len(views) >= 5
    names = {f"rnnviz.views.dashboard.callbacks.{p.stem}" for p in views}
    for path in views:
        tree = ast.parse(path.read_text())
        imported = {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        imported |= {f"{n.module}.{a.name}" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names}
        assert not imported & names, path.name
