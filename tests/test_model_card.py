"""scripts/model_card.py's "Units explained" section: its table is explain(control="init")'s fractions, beside
the architecture at initialisation, and the cells' scores carry their intervals."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

import rnnviz
from rnnviz.analysis.explain import explain, explained_fractions
from tests.conftest import words_text

pytestmark = pytest.mark.usefixtures("one_thread")

_spec = importlib.util.spec_from_file_location("model_card", Path(__file__).parent.parent / "scripts" / "model_card.py")
model_card = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(model_card)


def test_interval_shows_the_bounds_only_when_there_are_some():
    assert model_card.interval(0.8614, 0.8501, 0.8703) == "0.861 [0.850, 0.870]"
    assert model_card.interval(0.4, float("nan"), float("nan")) == "0.400"


@pytest.mark.slow
def test_explained_section_is_explain_beside_its_control(tmp_path, make_model):
    text = words_text(n=3000)  # ~12k characters: 3 blocks of 4,096 for the halves, 12 of 1,000 for the intervals
    store = rnnviz.record(make_model(text=text, seed=3), text, tmp_path / "s", kinds="h,c")
    want = explain(store, control="init")
    best = want.sort_values("score", ascending=False).iloc[0]
    lines = model_card.explained_section(store, {"a_feature": best["unit"]})
    fr = explained_fractions(want).set_index("group")
    rows = {ln.split(" | ")[0][2:]: ln.split(" | ") for ln in lines if ln.startswith("| ") and " | " in ln}
    assert set(fr.index) <= set(rows)
    for group, r in fr.iterrows():
        got = rows[group]
        assert got[1] == f"{int(r['units']):,}"
        assert got[2] == f"{r['cells_0.5']:.1%} / {r['cells_0.8']:.1%}"
        assert got[3] == f"{r['init_cells_0.5']:.1%} / {r['init_cells_0.8']:.1%}"
        assert got[4] == f"{r['inputs_0.5']:.1%} / {r['inputs_0.8']:.1%}"
        assert got[5] == f"{r['init_inputs_0.5']:.1%} / {r['init_inputs_0.8']:.1%}"
        assert got[6] == f"{r['learned']:.1%}"
        assert got[7] == f"{r['init_best']:.3f} |"
    cell = rows["a_feature"]
    assert cell[1] == best["unit"]
    assert cell[4] == model_card.interval(best["score"], best["score_lo"], best["score_hi"])
    assert ("[" in cell[4]) == bool(np.isfinite(best["score_lo"]))
    assert cell[7] == ("yes |" if best["learned"] else "no |")
