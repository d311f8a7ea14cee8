"""docs/examples run as a user runs them (shorter): a researcher's own word-level LSTM LM, trained by plain
PyTorch, recorded, ranked, explained and exported by rnnviz."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "war_and_peace.txt"


@pytest.mark.slow
@pytest.mark.skipif(not DATA.exists(), reason="the corpora in ../shared/data are not here")
def test_the_word_lm_example_goes_from_record_to_a_page(tmp_path):
    r = subprocess.run([sys.executable, str(ROOT / "docs" / "examples" / "word_lm.py"), "--text", str(DATA),
                        "--seconds", "3", "--test-words", "2000", "--no-serve"], cwd=tmp_path, capture_output=True,
                       text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, r.stderr[-3000:]
    lines = r.stdout.splitlines()
    assert lines[0].startswith("trained 3 s: loss ") and lines[1].split() == ["unit", "score", "control_score",
                                                                              "selectivity"]
    assert len(lines) == 1 + 6 + 6 and "Traceback" not in r.stderr
    from rnnviz.store.reader import open_store

    st = open_store(tmp_path / "stores" / "wordlm")
    assert st.is_tokens and st.length == 2000 and st.kinds == ["h", "c", "i", "f", "g", "o"]
    assert [e["module"] for e in st.meta.source["layers"]] == ["rnn", "rnn"] and st.meta.has_logprob
    assert (tmp_path / "wordlm_quote_cells.html").read_text(encoding="utf-8").lower().startswith("<!doctype html>")
