"""Issue 26, first use, in the system Chromium at 1280×800: a fresh page with no unit in its link opens on the store's
strongest explained cell (from the catalog kept beside the store), scrolled to where it fires, and the URL says so;
the Catalog of a store never explained shows its progress while explain runs, then its rows.
Screenshots go to test-artifacts/dashboard/."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlparse

import numpy as np
import pytest
from helpers import ARTIFACTS, quote_text, serve, spans

from rnnviz.analysis.explain_cache import CATALOG, cached_explain
from rnnviz.analysis.features import compute_feature
from rnnviz.model.charrnn import ModelConfig
from rnnviz.model.vocab import Vocab
from rnnviz.store.writer import write_store

sync_api = pytest.importorskip("playwright.sync_api")

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]
expect = sync_api.expect
expect.set_options(timeout=30_000)  # a page load on a busy 2-core machine can take 15 s

LENGTH, WINDOW = 8000, 2000
CELL = "1:c:3"  # on inside quotes, with its highest value at a quote deep in the text


def make_store(path):
    """Seeded noise in every unit but CELL: ±1 over quotes (plus a little noise), +2 at one quoted character near
    6,500, so that it is the best explained cell and fires most far below the first window's fold."""
    rng = np.random.default_rng(0)
    text = quote_text(LENGTH)
    vocab = Vocab.from_text(text)
    inq = compute_feature("in_quote", text)
    arrays = {(l, k): rng.uniform(-0.3, 0.3, (LENGTH, 8)).astype(np.float32) for l in (0, 1) for k in "hc"}
    arrays[(1, "c")][:, 3] = 2 * inq - 1 + rng.uniform(-0.05, 0.05, LENGTH)
    inside = np.flatnonzero(inq[6400:]) + 6400
    peak = int(inside[0]) + 1
    arrays[(1, "c")][peak, 3] = 2.0
    write_store(path, text, arrays, ModelConfig(vocab_size=len(vocab), cell="lstm", layers=2, hidden=8), vocab)
    return peak


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """Two stores: "known", whose catalog was computed before (kept beside it), and "new", never explained."""
    base = tmp_path_factory.mktemp("first-use")
    peak = make_store(base / "known")
    make_store(base / "new")
    from rnnviz.store.reader import open_store

    df = cached_explain(open_store(base / "known"), **CATALOG)
    cells = df[df["role"] == "cell"].sort_values("score", ascending=False)
    assert cells["unit"].iloc[0] == CELL  # the cell the page must open on
    for url, stores in serve([base / "known", base / "new"]):
        yield url, stores, peak


@pytest.fixture
def page(browser, request):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    pg = browser.new_page(viewport={"width": 1280, "height": 800})
    pg.set_default_timeout(30_000)
    errors = []
    pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    pg.on("pageerror", lambda e: errors.append(str(e)))
    yield pg
    pg.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"))
    pg.close()
    assert errors == []


def test_a_fresh_page_opens_on_the_strongest_cell_where_it_fires(page, served):
    base, stores, peak = served
    start = min(peak - 200, LENGTH - WINDOW)  # the window that holds it (the last full one)
    assert peak - start > 400  # below the fold unless the text is scrolled
    page.goto(base + "/")
    text = page.locator("#text")
    expect(text).to_have_attribute("data-drawn", f"{start}:{start + WINDOW}")
    expect(page.locator("#legend")).to_contain_text(CELL)
    q = parse_qs(urlparse(page.url).query)
    assert (q["store"], q["unit"], q["start"]) == (["known"], [CELL], [str(start)])
    at = spans(page).nth(peak - start)
    expect(at).to_have_class(re.compile(r"\bhl\b"))
    expect(at).to_have_text(stores[0].text[peak])  # the character where it fires most, outlined
    box, view = at.bounding_box(), text.bounding_box()
    assert view["y"] <= box["y"] and box["y"] + box["height"] <= view["y"] + view["height"]  # scrolled to it
    assert text.evaluate("t => t.scrollTop") > 0


def test_the_catalog_shows_its_progress_then_its_rows(page, served):
    base, stores, _ = served
    page.goto(base + "/?store=new&unit=0:h:0")
    expect(page.locator("#text")).to_have_attribute("data-drawn", "0:2000")
    page.get_by_text("Catalog", exact=True).click()
    expect(page.locator("#catalog-progress")).to_be_hidden()
    page.get_by_role("button", name="Explain every unit").click()
    bar, msg = page.locator("#catalog-progress"), page.locator("#catalog-msg")
    expect(bar).to_be_visible()
    expect(msg).to_contain_text(f"new: explaining {len(stores[1].units)} units, ")
    expect(msg).to_contain_text("% done")
    expect(page.locator("#catalog-table .ag-row").first).to_be_visible(timeout=120_000)
    expect(bar).to_be_hidden()
    expect(msg).to_contain_text("units explained")
    rows = page.locator("#catalog-table .ag-center-cols-container [col-id=unit]").all_inner_texts()
    assert CELL in rows
