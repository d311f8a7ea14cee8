"""The dashboard's defects of issue 12, each pinned in the system Chromium: the compare / feature bars, the
hover panel, the unit box, paging, histogram colours, the colour-range control, CRLF line ends, overlapping
plot labels, the layout at 1280×800, highlight outlines, the legend's wording, a bad feature in a link,
the loading placeholder and select-to-find on a whole quote. Screenshots go to test-artifacts/dashboard/."""

from __future__ import annotations

import re

import numpy as np
import pytest
from helpers import (
    ARTIFACTS,
    NEG_UNIT,
    QUOTE_UNIT,
    assert_no_overlaps,
    decode_png,
    hex_rgb,
    make_quote_store,
    new_page,
    open_view,
    pixel,
    quote_span,
    quote_text,
    serve,
    spans,
)

from rnnviz.model.charrnn import ModelConfig
from rnnviz.model.vocab import Vocab
from rnnviz.store.writer import write_store
from rnnviz.views.colours import COMPARE_PALETTES, FEATURE_RGB, PALETTES, ROBUST_Q, percentiles

sync_api = pytest.importorskip("playwright.sync_api")

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]
expect = sync_api.expect
expect.set_options(timeout=30_000)  # a page load on a busy 2-core machine can take 15 s


def make_crlf_store(path):
    """A store over text with CRLF line ends (seeded noise values)."""
    rng = np.random.default_rng(1)
    text = quote_text(600).replace("\n", "\r\n")[:600]
    vocab = Vocab.from_text(text)
    arrays = {(l, k): rng.uniform(-0.3, 0.3, (len(text), 4)).astype(np.float32) for l in (0, 1) for k in "hc"}
    write_store(path, text, arrays, ModelConfig(vocab_size=len(vocab), cell="lstm", layers=2, hidden=4), vocab)
    return path


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    base = tmp_path_factory.mktemp("views")
    make_quote_store(base / "quotes")
    make_crlf_store(base / "crlf")
    yield from serve([base / "quotes", base / "crlf"])


@pytest.fixture
def page(browser, request):
    pg, errors = new_page(browser, request, 1500, 1100)
    yield pg
    pg.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
    pg.close()
    assert errors == []


@pytest.fixture
def small_page(browser, request):
    pg, errors = new_page(browser, request, 1280, 800)
    yield pg
    pg.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"))
    pg.close()
    assert errors == []


def style(locator, prop: str) -> str:
    return locator.evaluate(f"e => getComputedStyle(e).{prop}")


def test_compare_and_feature_bars_are_drawn(page, served):
    base, stores = served
    s = stores[0]
    open_view(page, base, f"?store=quotes&unit=0:h:0&cmp={QUOTE_UNIT}&feature=in_quote", "0:2000")
    a, _ = quote_span(s.text, 0)
    el = spans(page).nth(a + 2)  # inside the first quote: compare unit at +1 (green bar), feature on (orange bar)
    green, orange = hex_rgb(COMPARE_PALETTES["diverging"][-1]), FEATURE_RGB
    assert style(el, "borderTopColor") == "rgb({}, {}, {})".format(*green)
    assert style(el, "borderBottomColor") == "rgb({}, {}, {})".format(*orange)
    # Pixels: the top and bottom rows of the character's box are the bars' colours.
    px = decode_png(el.screenshot())
    mid = px.shape[1] // 2
    assert green in {tuple(int(c) for c in px[y, mid, :3]) for y in range(3)}  # the 5-pixel bar over it
    assert orange in {tuple(int(c) for c in px[-1 - y, mid, :3]) for y in range(3)}  # and under it


def test_hover_panel_follows_the_unit(page, served):
    base, _ = served
    open_view(page, base, f"?store=quotes&unit={QUOTE_UNIT}", "0:2000")
    spans(page).nth(10).hover()
    expect(page.locator("#hover")).to_contain_text(f"{QUOTE_UNIT} = ")
    page.locator("#unit-next").click()
    expect(page.locator("#legend")).to_contain_text("1:c:4")
    expect(page.locator("#hover")).not_to_contain_text(f"{QUOTE_UNIT} = ")
    page.locator("#jump-input").fill("2500")
    page.locator("#jump-go").click()
    expect(page.locator("#text")).to_have_attribute("data-drawn", "1000:3000")
    expect(page.locator("#hover")).not_to_contain_text("#10 ")


def test_unit_box_always_shows_the_unit_on_screen(page, served):
    base, _ = served
    open_view(page, base, f"?store=quotes&unit={QUOTE_UNIT}", "0:2000")
    page.locator("#index-pick").fill("999")
    page.locator("#index-pick").press("Enter")
    expect(page.locator("#status")).to_have_text("no unit '1:c:999' in quotes: indices run from 0 to 7")
    expect(page.locator("#index-pick")).to_have_value("3")
    expect(page.locator("#legend")).to_contain_text(QUOTE_UNIT)
    page.locator("#kind-pick").click()
    page.get_by_role("option", name="h", exact=True).click()
    expect(page.locator("#legend")).to_contain_text("1:h:3")
    expect(page.locator("#index-pick")).to_have_value("3")


def test_next_pages_by_full_windows_and_stops_at_the_end(page, served):
    base, _ = served
    open_view(page, base, f"?store=quotes&unit={QUOTE_UNIT}&start=500", "500:2500")
    page.locator("#page-next").click()
    expect(page.locator("#text")).to_have_attribute("data-drawn", "1000:3000")
    expect(spans(page)).to_have_count(2000)
    page.locator("#page-next").click()
    expect(page.locator("#status")).to_have_text("this is the end of the text")
    expect(page.locator("#text")).to_have_attribute("data-drawn", "1000:3000")
    page.locator("#page-prev").click()
    expect(page.locator("#text")).to_have_attribute("data-drawn", "0:2000")


def test_histogram_colours_mean_what_the_text_colours_mean(page, served):
    base, _ = served
    open_view(page, base, f"?store=quotes&unit={QUOTE_UNIT}&feature=in_quote", "0:2000")
    page.get_by_text("Plots", exact=True).click()
    expect(page.locator("#hist .legendtext")).to_have_count(2)
    colours = page.evaluate("document.querySelector('#hist .js-plotly-plot').data.map(t => t.marker.color)")
    # Feature on = the feature bar's orange; off = grey: neither the text's red nor its blue.
    assert colours == ["#888888", "#{:02x}{:02x}{:02x}".format(*FEATURE_RGB)]


def test_colour_range_control_and_link(page, served):
    base, stores = served
    s = stores[0]
    unit = "0:h:0"  # noise in [-0.3, 0.3] on the ±1 scale of a hidden state: washed out
    v = s.unit(unit)[:2000].astype(np.float64)
    i = int(np.argmin(v))
    open_view(page, base, f"?store=quotes&unit={unit}&range=max", "0:2000")
    faint = spans(page).nth(i).get_attribute("class").split()[0]
    assert faint == f"d{int(np.rint((v[i] + 1) / 2 * 32))}"
    page.locator("#range-pick").click()
    page.get_by_role("option", name="per-unit [min, max]").click()
    lo = float(s.stats.loc[unit, "min"])
    expected = int(np.rint((v[i] / abs(lo) + 1) / 2 * 32))
    expect(spans(page).nth(i)).to_have_class(re.compile(rf"^d{expected}\b"))
    assert expected <= 1 and "range=minmax" in page.url
    expect(page.locator("#legend")).to_contain_text(f"blue = {lo:.3g}")
    assert pixel(spans(page).nth(i)) == hex_rgb(PALETTES["diverging"][expected])
    open_view(page, base, f"?store=quotes&unit={unit}&range=p99", "0:2000")
    p99 = float(np.quantile(np.abs(s.unit(unit).astype(np.float64)), 0.99))
    expect(page.locator("#legend")).to_contain_text(f"red = {p99:.3g}")


def test_the_default_colour_range_is_each_units_robust_range(page, served):
    # Issue 26: the default ±max|v| left a cell that lives in a small part of its range nearly white.
    base, stores = served
    s = stores[0]
    unit = "0:h:0"  # noise in [-0.3, 0.3]: barely tinted on the ±1 scale of a hidden state
    v = s.unit(unit)[:2000].astype(np.float64)
    i = int(np.argmin(v))
    open_view(page, base, f"?store=quotes&unit={unit}", "0:2000")
    lo, hi = percentiles(s, unit, ROBUST_Q)
    legend = page.locator("#legend")
    expect(legend).to_contain_text(
        f"colour: blue = {lo:.3g}, white = 0, red = {hi:.3g} (per-unit 1st-99th percentile; beyond: the end colours)")
    expect(page.locator("#range-pick")).to_contain_text("per-unit 1st-99th percentile")
    assert "range=" not in page.url  # the default is left out of the link
    assert spans(page).nth(i).get_attribute("class").split()[0] == "d0"  # its lowest value: full blue
    page.locator("#range-pick").click()
    page.get_by_role("option", name="±max|v|").click()
    expect(spans(page).nth(i)).to_have_class(re.compile(rf"^d{int(np.rint((v[i] + 1) / 2 * 32))}\b"))
    assert "range=max" in page.url
    expect(legend).to_contain_text("colour: blue = -1, white = 0, red = 1 (±max|v|)")


def test_crlf_line_ends_show_no_tofu(page, served):
    base, stores = served
    text = stores[1].text
    open_view(page, base, "?store=crlf&unit=0:h:0", "0:600")
    shown = spans(page).all_text_contents()
    assert "\u240d" not in "".join(shown)
    cr = text.index("\r")
    assert (shown[cr], shown[cr + 1]) == ("\u21b5", "\n")
    # Each line end takes one line: no empty line between two text lines.
    line = float(page.evaluate("parseFloat(getComputedStyle(document.getElementById('text')).lineHeight)"))
    first, second = spans(page).nth(cr - 1).bounding_box(), spans(page).nth(cr + 2).bounding_box()
    assert second["y"] - first["y"] == pytest.approx(line, abs=2)


def test_plot_legends_and_titles_do_not_overlap(page, served):
    base, _ = served
    open_view(page, base, f"?store=quotes&unit={QUOTE_UNIT}&cmp={NEG_UNIT}", "0:2000")
    expect(page.locator("#trace .legendtext")).to_have_count(3)
    assert_no_overlaps(page, "#trace")
    page.get_by_text("Plots", exact=True).click()
    expect(page.locator("#sat .gtitle")).to_have_text("quotes: gate saturation")
    assert_no_overlaps(page, "#sat")


def test_select_to_find_fits_1280x800(small_page, served):
    page = small_page
    base, stores = served
    a, b = quote_span(stores[0].text, 1)
    open_view(page, base, f"?store=quotes&unit={QUOTE_UNIT}", "0:2000")
    page.get_by_text("Select to find", exact=True).click()
    page.locator("#sel-a").fill(str(a))
    page.locator("#sel-b").fill(str(b + 1))  # the whole quote: both quote marks
    page.locator("#sel-go").click()
    rows = page.locator("#match-table tbody tr")
    expect(rows.first).to_be_visible()
    first = rows.first.bounding_box()
    assert first["y"] + first["height"] <= 800  # the first result is above the fold
    clipped = page.evaluate("Array.from(document.querySelectorAll('#match-table td.snip'))"
                            ".filter(td => td.scrollWidth > td.clientWidth + 1).length")
    assert clipped == 0
    assert page.evaluate("document.documentElement.scrollWidth") <= 1280


def test_one_outline_per_highlighted_run(page, served):
    base, stores = served
    open_view(page, base, f"?store=quotes&unit={QUOTE_UNIT}", "0:2000")
    page.locator("#find-input").fill("hello there")
    page.locator("#find-go").click()
    expect(page.locator("#text > span.hl")).to_have_count(11)
    expect(page.locator("#text .hl-box")).to_have_count(1)
    assert style(page.locator("#text > span.hl").nth(3), "outlineStyle") == "none"
    box = page.locator("#text .hl-box").bounding_box()
    first, last = (page.locator("#text > span.hl").nth(k).bounding_box() for k in (0, 10))
    assert box["x"] <= first["x"] and box["x"] + box["width"] >= last["x"] + last["width"]
    # The characters keep their colours under the outline.
    pal = PALETTES["diverging"]
    assert pixel(page.locator("#text > span.hl").nth(5)) == hex_rgb(pal[-1])


def test_legend_reads_as_a_colour_scale(page, served):
    base, _ = served
    open_view(page, base, f"?store=quotes&unit={QUOTE_UNIT}&range=max", "0:2000")
    legend = page.locator("#legend")
    expect(legend).to_contain_text("colour: blue = -1, white = 0, red = 1 (±max|v|)")
    expect(legend).not_to_contain_text("unit 3   -1")


def test_bad_feature_in_a_link_is_reported(page, served):
    base, _ = served
    open_view(page, base, f"?store=quotes&unit={QUOTE_UNIT}&feature=nonsense", "0:2000")
    expect(page.locator("#status")).to_contain_text("no feature 'nonsense'")


def test_loading_placeholder_while_the_trace_is_computed(page, served):
    base, _ = served
    held = []

    def hold(route):
        if "trace.figure" in (route.request.post_data or ""):
            held.append(route)
        else:
            route.continue_()

    page.route("**/_dash-update-component*", hold)
    open_view(page, base, f"?store=quotes&unit={QUOTE_UNIT}", "0:2000")
    expect(page.locator("#trace")).to_contain_text("loading")
    for r in held:
        r.continue_()
    page.unroute("**/_dash-update-component*")
    expect(page.locator("#trace .scatterlayer .trace")).to_have_count(2)
    expect(page.locator("#trace")).not_to_contain_text("loading")


def test_select_a_whole_quote_with_its_quote_marks(page, served):
    base, stores = served
    s = stores[0]
    a, b = quote_span(s.text, 2)
    open_view(page, base, "?store=quotes&unit=0:h:0", "0:2000")
    page.get_by_text("Select to find", exact=True).click()
    page.locator("#sel-a").fill(str(a))
    page.locator("#sel-b").fill(str(b + 1))
    page.locator("#sel-go").click()
    cells = page.locator("#sel-tables tbody tr")
    expect(cells.first).to_be_visible()
    assert cells.first.locator("td:nth-child(2)").inner_text() in (QUOTE_UNIT, NEG_UNIT)
    expect(page.locator("#match-table")).to_contain_text("strong")
    expect(page.locator("#sel-msg")).to_have_text("")
    # Bad selections: one line, nothing else changes.
    for x, y, msg in [(5000, 5010, "select a range inside the text"), (40, 40, "is empty"),
                      (0, 6000, "select a range inside the text")]:
        page.locator("#sel-a").fill(str(x))
        page.locator("#sel-b").fill(str(y))
        page.locator("#sel-go").click()
        expect(page.locator("#sel-msg")).to_contain_text(msg)
    page.locator("#sel-thr").fill("-1")
    page.locator("#sel-a").fill(str(a))
    page.locator("#sel-b").fill(str(b + 1))
    page.locator("#sel-go").click()
    expect(page.locator("#sel-msg")).to_contain_text("θ must be a finite number >= 0")
    expect(page.locator("#text")).to_have_attribute("data-drawn", "0:2000")


def test_pattern_view_drag_threshold_and_heatmaps(page, served):
    base, stores = served
    s = stores[0]
    a, b = quote_span(s.text, 2)
    cells = f"{QUOTE_UNIT},{NEG_UNIT},0:h:0"
    open_view(page, base, f"?store=quotes&unit={QUOTE_UNIT}&tab=pattern&sel={a}-{b + 1}&cells={cells}&feature=in_quote",
              "0:2000")
    onset = page.locator("#pat-onset")
    expect(onset).to_have_text(f"on-set at θ = 0.5 σ: {QUOTE_UNIT}, {NEG_UNIT} (2 of 3 cells)")
    expect(page.locator("#pattern .scatterlayer .trace")).to_have_count(3)
    expect(page.locator("#pat-cells")).to_have_value(f"{QUOTE_UNIT}, {NEG_UNIT}, 0:h:0")
    # Drag the dashed θ line to the top of the plot: no cell stays on that high.
    line = page.locator("#pattern .layer-above .shapelayer path").first  # the θ line (the selection is below)
    box = line.bounding_box()
    top = page.locator("#pattern .draglayer .nsewdrag").first.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] / 2, top["y"] + 2, steps=8)
    page.mouse.up()
    expect(onset).to_have_text(re.compile(r"on-set at θ = [\d.]+ σ: none \(0 of 3 cells\)"))
    theta = float(page.locator("#pat-thr").input_value())
    assert theta > 1 and f"theta={theta:g}" in page.url
    # Down to θ = 0.8 by typing, then search: each match is a heatmap of the on-set over its characters.
    page.locator("#pat-thr").fill("0.8")
    page.locator("#pat-thr").press("Enter")
    expect(onset).to_have_text(f"on-set at θ = 0.8 σ: {QUOTE_UNIT}, {NEG_UNIT} (2 of 3 cells)")
    page.locator("#pat-go").click()
    heat = page.locator("#pat-matches .heat")
    expect(heat.first).to_be_visible()
    assert heat.count() == 6
    image = heat.first.locator(".heatmaplayer image").first
    expect(image).to_be_visible()
    img = decode_png(image.screenshot())[::3, ::7, :3].reshape(-1, 3).astype(int)
    colours = {tuple(c) for c in img.tolist()}
    # Red where the on-set is on (the match), white-to-blue in the context around it.
    assert any(r > bb + 60 for r, _, bb in colours) and any(bb > r for r, _, bb in colours)
    # A bad cell set or θ: one line, the view unchanged.
    page.locator("#pat-cells").fill("1:c:3, 9:q:9")
    page.locator("#pat-cells").press("Enter")
    expect(page.locator("#status")).to_have_text("no unit '9:q:9' in quotes: give LAYER:KIND:INDEX")
    expect(page.locator("#pat-cells")).to_have_value(f"{QUOTE_UNIT}, {NEG_UNIT}, 0:h:0")
    page.locator("#pat-thr").fill("-1")
    page.locator("#pat-thr").press("Enter")
    expect(page.locator("#status")).to_contain_text("θ must be a finite number >= 0")
    expect(onset).to_have_text(f"on-set at θ = 0.8 σ: {QUOTE_UNIT}, {NEG_UNIT} (2 of 3 cells)")


def test_the_text_is_drawn_before_plotly_is_loaded(page, served):
    # Plotly (4.8 MB of script) is evaluated after the coloured text, not before it: the trace's graph is
    # mounted once the first window is drawn. The time the first span appears, against Plotly's request.
    base, _ = served
    page.add_init_script("""new MutationObserver((_, obs) => {
        const t = document.getElementById('text');
        if (t && t.children.length) { window.__drawnAt = performance.now(); obs.disconnect(); }
    }).observe(document, {childList: true, subtree: true});""")
    open_view(page, base, f"?store=quotes&unit={QUOTE_UNIT}", "0:2000")
    expect(page.locator("#trace .scatterlayer .trace")).to_have_count(2)  # the trace still follows
    drawn = page.evaluate("window.__drawnAt")
    plotly = page.evaluate("performance.getEntriesByType('resource').filter(e => e.name.includes('plotly')).map("
                           "e => e.startTime)")
    assert drawn is not None and len(plotly) == 1 and plotly[0] > drawn


def drag_theta_line(page, to: str) -> None:
    """Drag the pattern view's dashed θ line with the mouse to the ``to`` ("top" or "bottom") of the plot."""
    line = page.locator("#pattern .layer-above .shapelayer path").first  # the θ line (the selection is below)
    box = line.bounding_box()
    plot = page.locator("#pattern .draglayer .nsewdrag").first.bounding_box()
    y = plot["y"] + 2 if to == "top" else plot["y"] + plot["height"] - 2
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] / 2, y, steps=8)
    page.mouse.up()


def test_theta_dragged_past_every_cell_keeps_the_plot_and_its_line(page, served):
    # Issue 26: θ dragged above the last cell replaced the plot by a message (the line was gone for good).
    base, stores = served
    a, b = quote_span(stores[0].text, 2)
    open_view(page, base, f"?store=quotes&unit={QUOTE_UNIT}&tab=pattern&sel={a}-{b + 1}", "0:2000")
    onset, traces = page.locator("#pat-onset"), page.locator("#pattern .scatterlayer .trace")
    expect(onset).to_contain_text(QUOTE_UNIT)
    expect(page.locator("#pattern .gtitle")).to_contain_text("θ = 0.5 σ: ")  # the lines are drawn
    n = traces.count()
    assert n >= 2
    drag_theta_line(page, "top")
    expect(onset).to_have_text(re.compile(rf"on-set at θ = [\d.]+ σ: none \(0 of {n} cells\)"))
    theta = float(page.locator("#pat-thr").input_value())
    assert theta > 1 and f"theta={theta:g}" in page.url
    assert page.locator("#pat-thr").evaluate("e => e.checkValidity()")  # the box takes the dragged value
    expect(traces).to_have_count(n)  # the same cells, and the θ line still there to drag back
    expect(page.locator("#pattern .gtitle")).to_contain_text(f": 0 of {n} cells on")
    expect(page.locator("#pat-msg")).to_have_text("")
    drag_theta_line(page, "bottom")
    expect(onset).to_have_text(re.compile(rf"on-set at θ = [\d.]+ σ: .*{QUOTE_UNIT}.* of {n} cells\)"))
    assert float(page.locator("#pat-thr").input_value()) >= 0
    assert page.locator("#pat-thr").evaluate("e => e.checkValidity()")
    expect(page.locator("#status")).to_have_text("")


def test_switching_tabs_leaves_the_text_its_scroll_and_the_hover_panel(page, served):
    # Issue 26: a tab switch redrew the text, scrolled it back to the top and emptied the hover panel.
    base, _ = served
    open_view(page, base, f"?store=quotes&unit={QUOTE_UNIT}", "0:2000")
    text = page.locator("#text")
    text.evaluate("t => { t.scrollTop = 300; t.firstElementChild.dataset.mark = 'kept'; }")
    span = spans(page).nth(int(text.evaluate("t => Array.from(t.children).findIndex(s => s.offsetTop > 400)")))
    span.hover()
    hover = page.locator("#hover")
    expect(hover).to_contain_text(f"{QUOTE_UNIT} = ")
    shown = hover.inner_text()
    for tab, url in (("Plots", r"tab=plots"), ("Pattern", r"tab=pattern"), ("Hypotheses", r"^[^#]*unit=[^#]*$")):
        page.mouse.move(5, 5)  # off the text: the panel keeps the last character hovered
        page.get_by_text(tab, exact=True).click()
        expect(page).to_have_url(re.compile(url))
        page.wait_for_timeout(1000)  # time for a redraw that must not come
        assert text.evaluate("t => t.firstElementChild.dataset.mark") == "kept"  # the same spans
        assert text.evaluate("t => t.scrollTop") == 300 and hover.inner_text() == shown
    assert "tab=" not in page.url  # back on the first tab
