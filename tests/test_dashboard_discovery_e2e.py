"""Issue 26: the discovery loop driven as a researcher drives it, in the system Chromium at 1280×800: the catalog
as a grid (dash-ag-grid), its signs, message and filter, a catalog already computed shown on a revisit, the match
tables' column help and readable snippets, a click on a ranked unit going where it fires, the top bar and tabs on
one line each, a compare unit with its own legend and colours, and selection as an explicit mode.
Screenshots go to test-artifacts/dashboard/."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest
from helpers import (
    NEG_UNIT,
    QUOTE_UNIT,
    assert_no_overlaps,
    boxes,
    checked_page,
    decode_png,
    hex_rgb,
    open_view,
    quote_text,
    serve,
    spans,
)

from rnnviz.analysis.features import compute_feature
from rnnviz.model.charrnn import ModelConfig
from rnnviz.model.vocab import Vocab
from rnnviz.store.writer import write_store
from rnnviz.views.colours import COMPARE_PALETTES, PALETTES
from rnnviz.views.dashboard import create_app
from rnnviz.views.dashboard.figures import COMPARE_LINE, UNIT_LINE

sync_api = pytest.importorskip("playwright.sync_api")

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]
expect = sync_api.expect
expect.set_options(timeout=30_000)  # a page load on a busy 2-core machine can take 15 s

LENGTH = 8000
A_UNIT = "0:c:1"  # 1 where the character just read is an "a", else 0: an input detector
UP_UNIT, DOWN_UNIT = "0:c:2", "0:c:4"  # quote cells whose strongest value (+3 / -3) is deep in the text


def quote_starts(text: str) -> list[int]:
    return [m.start() for m in re.finditer(r'"[^"]+"', text)]


def peaks(text: str) -> tuple[int, int]:
    """Where UP_UNIT peaks and DOWN_UNIT dips: the second character of a quote near 6,500 and of one near 4,300."""
    starts = np.array(quote_starts(text))
    return (int(starts[np.argmin(abs(starts - 6500))]) + 2, int(starts[np.argmin(abs(starts - 4300))]) + 2)


def make_discovery_store(path):
    """The quote store's text and planted units over LENGTH characters, plus an input detector and two quote
    cells whose strongest activation is deep in the text (seeded noise elsewhere)."""
    rng = np.random.default_rng(0)
    text = quote_text(LENGTH)
    vocab = Vocab.from_text(text)
    T, H = len(text), 8
    inq = compute_feature("in_quote", text)
    arrays = {(l, k): rng.uniform(-0.3, 0.3, (T, H)).astype(np.float32) for l in (0, 1) for k in "hc"}
    arrays[(1, "c")][:, 3] = 2 * inq - 1
    arrays[(1, "h")][:, 5] = -(2 * inq - 1) * 0.5
    arrays[(0, "c")][:, 1] = (np.frombuffer(text.encode(), np.uint8) == ord("a")).astype(np.float32)
    up, down = peaks(text)
    arrays[(0, "c")][:, 2] = 0.8 * inq + rng.uniform(-0.1, 0.1, T)
    arrays[(0, "c")][up, 2] = 3.0
    arrays[(0, "c")][:, 4] = -0.8 * inq + rng.uniform(-0.1, 0.1, T)
    arrays[(0, "c")][down, 4] = -3.0
    cfg = ModelConfig(vocab_size=len(vocab), cell="lstm", layers=2, hidden=H)
    return write_store(path, text, arrays, cfg, vocab)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    base = tmp_path_factory.mktemp("discovery")
    make_discovery_store(base / "disc")
    yield from serve([base / "disc"])


@pytest.fixture
def page(browser, request):
    yield from checked_page(browser, request)


def explain_all(page):
    page.get_by_text("Catalog", exact=True).click()
    page.get_by_role("button", name="Explain every unit").click()
    expect(page.locator("#catalog-table .ag-row").first).to_be_visible(timeout=90_000)


def sort_by(page, col: str, order: str) -> None:
    """Click a column's header, as a person does, until the grid is sorted by it in ``order`` (ascending or
    descending)."""
    header = page.locator(f"#catalog-table .ag-header-cell[role=columnheader][col-id={col}]")
    for _ in range(3):
        if header.get_attribute("aria-sort") == order:
            return
        header.locator(".ag-header-cell-text").click()
        page.wait_for_timeout(300)
    expect(header).to_have_attribute("aria-sort", order)


def grid_column(page, col: str) -> list[str]:
    return page.locator(f"#catalog-table .ag-center-cols-container [col-id={col}]").all_inner_texts()


# --- 1. the catalog is a grid (dash-ag-grid) ---


def test_the_app_builds_without_a_deprecation_warning(served):
    base, stores = served
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)  # dash_table.DataTable warned on every build
        create_app([stores[0].path])


def test_catalog_is_a_grid_and_a_click_on_a_unit_opens_it(page, served):
    base, _ = served
    open_view(page, base, "?store=disc&unit=0:h:0", "0:2000")
    explain_all(page)
    assert page.locator(".dash-spreadsheet").count() == 0  # no DataTable
    scores = [float(s) for s in grid_column(page, "score")]
    assert scores == sorted(scores, reverse=True) and len(scores) == 15  # best first, a page of 15
    page.locator("#catalog-table .ag-center-cols-container [col-id=unit]", has_text=QUOTE_UNIT).click()
    expect(page).to_have_url(re.compile("unit=1%3Ac%3A3"))
    expect(page.locator("#legend")).to_contain_text(f"{QUOTE_UNIT} cell state")
    expect(page.locator("#catalog-track .gtitle")).to_have_text(f"{QUOTE_UNIT}: feature:in_quote")
    expect(page.locator("#catalog-contexts td.snip").first).to_be_visible()


# --- 3. the catalog: message, signs, the input-detector filter, a revisit ---


def test_catalog_says_success_in_grey_shows_signs_and_hides_input_detectors(page, served):
    base, _ = served
    open_view(page, base, "?store=disc&unit=0:h:0", "0:2000")
    explain_all(page)
    msg = page.locator("#catalog-msg")
    expect(msg).to_contain_text(" as cells, 1 as input detectors (the character just read alone)")
    expect(msg).to_contain_text("; 1 input detector hidden below")
    assert msg.evaluate("e => getComputedStyle(e).color") == "rgb(102, 102, 102)"  # the notes' grey, not red
    sort_by(page, "sign", "ascending")  # each sign on top in turn
    signs = set(grid_column(page, "sign"))
    sort_by(page, "sign", "descending")
    signs |= set(grid_column(page, "sign"))
    assert signs == {"+", "\u2212"}
    sort_by(page, "score", "descending")  # back to the best first
    assert A_UNIT not in grid_column(page, "unit")  # hidden, though it scores highest
    page.get_by_label(re.compile("hide input detectors")).uncheck()
    row = page.locator("#catalog-table .ag-center-cols-container .ag-row", has_text=A_UNIT)
    expect(row.locator("[col-id=rule]")).to_have_text('prev:"a"')
    expect(row.locator("[col-id=score]")).to_have_text("1")
    expect(msg).not_to_contain_text("hidden")
    # The hypotheses' ranking says the sign the same way.
    page.get_by_text("Hypotheses", exact=True).click()
    page.locator("#regex-input").fill('"[^"]*"')
    page.locator("#regex-input").press("Enter")
    expect(page.locator("#rank-table tbody tr").first).to_be_visible()
    col = page.locator("#rank-table thead th").all_inner_texts().index("sign") + 1
    assert set(page.locator(f"#rank-table tbody td:nth-child({col})").all_inner_texts()) <= {"+", "\u2212"}


def test_a_computed_catalog_is_shown_on_a_revisit(page, served):
    base, _ = served
    open_view(page, base, "?store=disc&unit=0:h:0", "0:2000")
    explain_all(page)
    page.get_by_text("Pattern", exact=True).click()
    page.get_by_text("Catalog", exact=True).click()
    expect(page.locator("#catalog-table .ag-row").first).to_be_visible()
    open_view(page, base, "?store=disc&unit=0:h:0&tab=catalog", "0:2000")  # a new visit: no click
    expect(page.locator("#catalog-table .ag-row")).not_to_have_count(0)
    expect(page.locator("#catalog-msg")).to_contain_text("units explained")


# --- 2. the match tables ---


def test_match_tables_explain_their_columns_and_show_snippets_as_text(page, served):
    base, stores = served
    text = stores[0].text
    a = quote_starts(text)[1]
    b = text.index('"', a + 1) + 1
    open_view(page, base, "?store=disc&unit=0:h:0", "0:2000")
    page.get_by_text("Select to find", exact=True).click()
    page.locator("#sel-a").fill(str(a))
    page.locator("#sel-b").fill(str(b))
    page.get_by_role("button", name="Find units").click()
    matches = page.locator("#match-table tbody tr")
    expect(matches.first).to_be_visible()
    for table in ("#sel-tables", "#match-table"):
        titles = page.locator(f"{table} thead th").evaluate_all("ths => ths.map(th => th.title)")
        assert all(titles[1:] if table == "#sel-tables" else titles), titles  # every column but the row number
        expect(page.locator(f"{table} .colhelp")).to_be_visible()
    expect(page.locator("#match-table .colhelp")).to_contain_text("LSTMVis #: its rank by LSTMVis's order")
    snips = page.locator("#match-table td.snip").all_inner_texts()
    assert not any(c in "".join(snips) for c in "\u2423\u21e5") and "CR" not in "".join(snips)
    first = matches.first.locator("td:nth-child(2)").inner_text()
    x, y = (int(t.replace(",", "")) for t in first.split("–"))
    assert matches.first.locator("td.snip b").inner_text() == text[x:y].replace("\n", "\u21b5")
    assert snips[0] == text[max(0, x - 15) : y + 15].replace("\n", "\u21b5")  # real spaces; ↵ for a line end
    font = page.locator("#match-table td.snip").first.evaluate("e => getComputedStyle(e).fontFamily")
    assert "mono" in font.lower()


# --- 4. a click on a ranked unit goes where it fires ---


def test_clicking_a_ranked_unit_goes_to_where_it_fires(page, served):
    base, stores = served
    up, down = peaks(stores[0].text)
    open_view(page, base, "?store=disc&unit=0:h:0&feature=in_quote", "0:2000")
    rows = page.locator("#rank-table tbody tr")
    expect(rows.first).to_be_visible()
    text = page.locator("#text")
    for unit, at in ((UP_UNIT, up), (DOWN_UNIT, down)):
        rows.filter(has_text=unit).click()
        start = min(at - 200, LENGTH - 2000)
        expect(text).to_have_attribute("data-drawn", f"{start}:{start + 2000}")
        expect(page.locator("#legend")).to_contain_text(unit)
        peak = spans(page).nth(at - start)
        expect(peak).to_have_class(re.compile(r"\bhl\b"))
        box, view = peak.bounding_box(), text.bounding_box()
        assert view["y"] <= box["y"] and box["y"] + box["height"] <= view["y"] + view["height"]  # scrolled to it
        if unit == UP_UNIT:  # 500 characters into its window: below the fold unless scrolled
            assert text.evaluate("t => t.scrollTop") > 0


# --- 5. the layout at 1280 pixels ---


def test_at_1280_the_top_bar_and_the_tabs_take_one_line_and_titles_clear_legends(page, served):
    base, stores = served
    a = quote_starts(stores[0].text)[2]
    b = stores[0].text.index('"', a + 1) + 1
    cells = ",".join([QUOTE_UNIT, NEG_UNIT, UP_UNIT, DOWN_UNIT, "0:h:0"])
    open_view(page, base, f"?store=disc&unit={QUOTE_UNIT}&cmp={NEG_UNIT}&feature=in_quote&tab=pattern"
                          f"&sel={a}-{b}&cells={cells}", "0:2000")
    bar = boxes(page, "#app > .row:has(#store-pick) > *")
    assert len(bar) >= 12
    middles = [p["y"] + p["h"] / 2 for p in bar]
    assert max(middles) - min(middles) < 4  # every control on one line
    assert page.locator("#app > .row:has(#store-pick)").bounding_box()["height"] < 45
    tabs = page.locator("#tabs .tab")
    heights = tabs.evaluate_all("ts => ts.map(t => t.getBoundingClientRect().height)")
    assert max(heights) < 40 and len({round(h) for h in heights}) == 1  # one line each
    assert tabs.evaluate_all("ts => ts.filter(t => t.scrollWidth > t.clientWidth + 1).length") == 0  # none cut
    assert len({round(p["y"]) for p in boxes(page, "#tabs .tab")}) == 1  # one row of tabs
    assert page.evaluate("document.documentElement.scrollWidth") <= 1280
    expect(page.locator("#pattern .legendtext")).to_have_count(5)
    assert_no_overlaps(page, "#pattern")
    expect(page.locator("#trace .legendtext")).to_have_count(3)
    assert_no_overlaps(page, "#trace")


# --- 6. compare ---


def test_the_compare_unit_has_a_legend_a_visible_bar_and_its_own_colours(page, served):
    base, stores = served
    open_view(page, base, f"?store=disc&unit={QUOTE_UNIT}", "0:2000")
    page.locator("#cmp-input").fill(NEG_UNIT)
    page.locator("#cmp-input").press("Enter")
    legend = page.locator("#legend-cmp")
    expect(legend).to_contain_text(f"{NEG_UNIT} compared: the bar over each character")
    expect(legend).to_contain_text("purple = -0.5, white = 0, green = 0.5")
    a = quote_starts(stores[0].text)[0] + 2  # inside a quote: NEG_UNIT at its lowest, -0.5
    el = spans(page).nth(a)
    expect(el).to_have_class(re.compile(r"\bod0\b"))
    assert el.evaluate("e => getComputedStyle(e).borderTopWidth") == "5px"
    purple = hex_rgb(COMPARE_PALETTES["diverging"][0])
    px = decode_png(el.screenshot())
    assert purple in {tuple(int(c) for c in px[y, px.shape[1] // 2, :3]) for y in range(5)}  # the bar, drawn
    text_colours = {hex_rgb(c) for c in PALETTES["diverging"]}
    assert purple not in text_colours and hex_rgb(COMPARE_PALETTES["diverging"][-1]) not in text_colours
    expect(page.locator("#trace .scatterlayer .trace")).to_have_count(2)  # no loss: the store has no predictions
    lines = page.evaluate("document.querySelector('#trace .js-plotly-plot').data.slice(0, 2).map(t => t.line.color)")
    assert lines == [UNIT_LINE, COMPARE_LINE] and COMPARE_LINE == COMPARE_PALETTES["diverging"][0]
    assert not {hex_rgb(c) for c in lines} & text_colours


# --- 7. selection as an explicit mode ---


def drag(page, first: int, last: int) -> None:
    a, b = spans(page).nth(first).bounding_box(), spans(page).nth(last).bounding_box()
    page.mouse.move(a["x"] + 1, a["y"] + a["height"] / 2)
    page.mouse.down()
    page.mouse.move(b["x"] + b["width"] / 2, b["y"] + b["height"] / 2, steps=5)
    page.mouse.move(b["x"] + b["width"] - 1, b["y"] + b["height"] / 2)
    page.mouse.up()


def test_a_selection_to_copy_text_leaves_the_panels_alone_until_select_to_find_is_on(page, served):
    base, stores = served
    text = stores[0].text
    a = quote_starts(text)[1]
    b = text.index('"', a + 1) + 1
    open_view(page, base, f"?store=disc&unit={QUOTE_UNIT}", "0:2000")
    drag(page, a, b - 1)  # the mode is off when the page opens
    assert page.evaluate("window.getSelection().toString()") == text[a:b]  # selected, to copy
    page.wait_for_timeout(1500)  # time for a search that must not come
    assert "sel=" not in page.url and "tab=" not in page.url
    expect(page.locator("#tabs .tab--selected")).to_have_text("Hypotheses")  # the panel on the right unchanged
    box = page.get_by_label("select to find")
    expect(box).not_to_be_checked()
    box.check()
    drag(page, a, b - 1)
    expect(page).to_have_url(re.compile(f"tab=sel&sel={a}-{b}"))
    expect(page.locator("#sel-a")).to_have_value(str(a))
    expect(page.locator("#sel-tables tbody tr").first).to_be_visible()
    box.uncheck()
    drag(page, a + 1, b - 2)
    page.wait_for_timeout(1500)
    expect(page).to_have_url(re.compile(f"sel={a}-{b}"))  # the search stays as it was
