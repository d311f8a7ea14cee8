import importlib
import inspect

import rnnviz


def test_public_api_names_are_functions_and_classes_even_after_submodule_imports():
    importlib.import_module("rnnviz.record")
    importlib.import_module("rnnviz.train")
    importlib.import_module("rnnviz.emergence")
    for name in rnnviz.__all__:
        obj = getattr(rnnviz, name)
        assert not inspect.ismodule(obj), name
        assert getattr(rnnviz, name) is obj  # the second access gives the same object
    assert rnnviz.record.__module__ == "rnnviz.record" and callable(rnnviz.record)
    assert rnnviz.emergence.__module__ == "rnnviz.emergence" and callable(rnnviz.emergence)
