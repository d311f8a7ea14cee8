"""Every command imports only what it uses (issue 31, start-up): each runs as a user runs it, in a fresh
interpreter, on a small store, and the heavy packages it left in ``sys.modules`` are exactly the ones its
work needs. torch alone costs ~1 CPU-second to import: a command that reads a store and never runs a
model (similar, export, export-lstmvis) must not pay it, nor the dashboard's Dash and Plotly, h5py, or
mambapy. A future import that drags one of them back in fails here, naming the command.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import make_quote_store, quote_span, quote_text

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "dash", "plotly", "h5py", "mambapy", "scipy", "sklearn")  # each costs 0.1-1 CPU-second to import
# Runs the CLI's main on argv, then prints the heavy packages loaded: on the last line of stdout
PROBE = f"""
import sys
from rnnviz.cli import main
try:
    main(sys.argv[1:], standalone_mode=False)
finally:
    print(sorted(m for m in {HEAVY!r} if m in sys.modules))
"""


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("startup") / "st"
    make_quote_store(path)
    return path


def loaded(*args) -> tuple[list[str], str]:
    """The heavy packages loaded by ``rnnviz ARGS`` in a fresh interpreter, and what it printed before."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    r = subprocess.run([sys.executable, "-c", PROBE, *map(str, args)], capture_output=True, text=True, env=env,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    *out, last = r.stdout.rstrip("\n").split("\n")
    return eval(last), "\n".join(out)  # a list of str literals, printed by PROBE


@pytest.mark.parametrize("args", [["--help"], ["find", "--help"], ["serve", "--help"], ["record", "--help"],
                                  ["features"]])
def test_help_and_listings_import_nothing_heavy(args):
    mods, out = loaded(*args)
    assert mods == []
    assert out  # the help or the list was printed


def test_similar_reads_the_store_without_torch(store):
    a, b = quote_span(quote_text(), 1)
    mods, out = loaded("similar", store, "--start", a, "--end", b, "--top", 3, "--format", "csv")
    assert mods == []
    assert out.splitlines()[0].startswith("unit,")


def test_export_writes_its_page_without_torch(store, tmp_path):
    mods, out = loaded("export", store, "--unit", "1:c:3", "--out", tmp_path / "x.html")
    assert mods == []
    assert "1:c:3" in (tmp_path / "x.html").read_text(encoding="utf-8")


def test_export_lstmvis_imports_h5py_alone(store, tmp_path):
    mods, _ = loaded("export-lstmvis", store, "--out", tmp_path / "lv")
    assert mods == ["h5py"]
    assert (tmp_path / "lv" / "states.h5").is_file()


@pytest.mark.parametrize("args", [["find", "{store}", "--feature", "in_quote", "--top", "2"],
                                  ["explain", "{store}", "--units", "1:c:3", "--control", "none"]])
def test_ranking_commands_import_torch_alone(store, args):
    """find and explain multiply on torch (their GEMMs): torch, and nothing else heavy."""
    mods, out = loaded(*[str(store) if a == "{store}" else a for a in args])
    assert mods == ["torch"]
    assert "1:c:3" in out
