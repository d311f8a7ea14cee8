"""The emergence figure (``rnnviz emergence --out``) in the system Chromium: it draws offline, from the one
file, with its lines in their colours, and a user's regex feature shows as text."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import decode_png

from rnnviz.analysis.emergence import appears_at, write_emergence_html

pytestmark = pytest.mark.e2e
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
FEATURE = "re:<b>%{x}</b>"  # HTML and a plotly template in a user's pattern: both must stay text


def frame() -> pd.DataFrame:
    steps = [100, 200, 300, 400, 500]
    rows = []
    for feature, metric, final in (("in_quote", "auroc", [0.55, 0.7, 0.93, 0.95, 0.96]),
                                   (FEATURE, "pearson", [0.05, 0.1, 0.2, 0.5, 0.52])):
        for k, step in enumerate(steps):
            rows.append({"feature": feature, "step": step, "seconds": 10.0 * k, "val_loss": 3.0 - 0.3 * k,
                         "metric": metric, "best_unit": "1:c:3" if k >= 2 else "0:h:1", "score": final[k] + 0.01,
                         "selectivity": 0.2, "same_as_final": k >= 2, "final_unit": "1:c:3",
                         "final_score": final[k], "final_selectivity": 0.2})
    df = pd.DataFrame(rows)
    df.attrs.update(appears_at=appears_at(df), final_step=500, run="runs/<wp>")
    return df


def test_figure_draws_offline(browser, tmp_path):
    df = frame()
    assert df.attrs["appears_at"] == {"in_quote": 300, FEATURE: 400}
    out = write_emergence_html(df, tmp_path / "emergence.html")
    page = browser.new_page(viewport={"width": 1000, "height": 600})
    errors, requests = [], []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("request", lambda r: requests.append(r.url))
    page.goto(out.as_uri())
    page.wait_for_selector(".js-plotly-plot .scatterlayer .trace")
    ARTIFACTS.mkdir(exist_ok=True)
    shot = page.screenshot(path=str(ARTIFACTS / "emergence_e2e.png"))
    assert errors == [] and requests == [out.as_uri()]  # nothing fetched: plotly.js is in the file
    # 2 features x (best, final, appearance star) + the loss
    assert page.locator(".scatterlayer .trace").count() == 7
    legend = page.locator(".legendtext").all_text_contents()
    assert legend == ["in_quote: best unit", "in_quote: final 1:c:3", f"{FEATURE}: best unit",
                      f"{FEATURE}: final 1:c:3", "validation loss"]
    assert page.locator(".gtitle").text_content() == "When each cell emerges · <wp>"
    assert page.locator(".g-y2title").text_content() == "validation loss (nats/char)"
    # the lines are drawn in their colours: plotly blue and red for the features, grey for the loss
    img = decode_png(shot).reshape(-1, 3).astype(int)
    for colour in ((0x1F, 0x77, 0xB4), (0xD6, 0x27, 0x28), (0x77, 0x77, 0x77)):
        assert (np.abs(img - colour).sum(1) < 30).sum() > 200, colour
    page.close()
