"""Issue 26 §3, driven as a researcher drives it in the system Chromium at 1280×800: the Overview tab (every unit of a
layer and kind as a row over the text, input detectors filtered, a click on a row colours the text by that unit, the
stretch scrolled and following the text) and the pattern view as LSTMVis's match view (a click on a line adds or
drops its cell, θ dragged filters the fixed set, each match a heatmap aligned with its text that scrolls sideways).
Screenshots go to test-artifacts/dashboard/."""

from __future__ import annotations

import re

import numpy as np
import pytest
from helpers import (
    ARTIFACTS,
    OV_A,
    OV_RAMP,
    OV_RISE,
    OV_STEP,
    checked_page,
    make_overview_store,
    open_view,
    serve,
    spans,
)

from rnnviz.views.colours import unit_scale
from rnnviz.views.match_heatmap import COLUMN_PX, column_labels

sync_api = pytest.importorskip("playwright.sync_api")

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]
expect = sync_api.expect
expect.set_options(timeout=30_000)  # a page load on a busy 2-core machine can take 15 s


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    base = tmp_path_factory.mktemp("overview")
    make_overview_store(base / "ov")
    yield from serve([base / "ov"])


@pytest.fixture
def page(browser, request):
    yield from checked_page(browser, request)


# --- the overview ---


def row_ticks(page):
    return page.locator("#ov-heat .yaxislayer-above .ytick text")


def test_overview_rows_filter_scroll_and_a_click_colours_the_text(page, served):
    base, stores = served
    store = stores[0]
    open_view(page, base, "?store=ov&unit=0:c:5", "0:2000")
    page.get_by_text("Overview", exact=True).click()
    expect(page).to_have_url(re.compile(r"tab=overview"))
    rows, msg = row_ticks(page), page.locator("#ov-msg")
    expect(rows).to_have_count(7)  # layer 0's c, its "a" detector hidden
    expect(msg).to_contain_text("7 of 8 units of 0:c, ordered by two-state η")
    expect(msg).to_contain_text("1 input detector hidden")
    assert OV_A not in rows.all_text_contents()
    title = page.locator("#ov-heat .gtitle")
    expect(title).to_have_text("0:c: characters 0–500")
    page.screenshot(path=str(ARTIFACTS / "overview_filtered.png"))
    # Untick the filter: the detector's row comes back.
    page.locator("#ov-hide").get_by_label("hide input detectors").uncheck()
    expect(rows).to_have_count(8)
    expect(msg).to_contain_text("8 of 8 units of 0:c")
    assert OV_A in rows.all_text_contents()
    # Scroll the stretch on its own, then page the text: the overview follows the text's window.
    page.locator("#ov-next").click()
    expect(title).to_have_text("0:c: characters 500–1,000")
    page.locator("#page-next").click()
    expect(page.locator("#text")).to_have_attribute("data-drawn", "2000:4000")
    expect(title).to_have_text("0:c: characters 2,000–2,500")
    expect(page.locator("#ov-start")).to_have_value("2000")
    # Click the ramp's row: the text is coloured by it (its own robust range), the URL names it.
    tick = rows.filter(has_text=OV_RAMP).bounding_box()
    plot = page.locator("#ov-heat .nsewdrag").first.bounding_box()
    page.mouse.click(plot["x"] + plot["width"] / 2, tick["y"] + tick["height"] / 2)
    expect(page).to_have_url(re.compile(r"unit=0%3Ac%3A3.*start=2000"))
    expect(page.locator("#legend")).to_contain_text(f"{OV_RAMP} cell state")
    scale = unit_scale(store, OV_RAMP, "robust")
    want = [f"d{b}" for b in scale.bins(store.window(2000, 4000, [OV_RAMP])[:, 0])]
    for k in (0, 250, 499, 1300):
        expect(spans(page).nth(k)).to_have_attribute("class", want[k])
    assert len(set(want)) > 20  # the ramp runs through the scale


# --- the match view ---


def line_point(page, unit: str) -> dict:
    """Where to click ``unit``'s line in the pattern plot: the point of its line farthest (in pixels, in the plane)
    from every point of the other lines and from the θ line, in page coordinates (hover picks the closest point)."""
    return page.evaluate("""unit => {
        const gd = document.querySelector('#pattern .js-plotly-plot');
        const t = gd.data.findIndex(d => d.name.startsWith(unit + ' '));
        const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis;
        const px = d => Array.from(d.x, v => xa.l2p(v)), py = d => Array.from(d.y, v => ya.l2p(v));
        const lines = gd._fullData.map(d => [px(d), py(d)]);
        const theta = ya.l2p(gd._fullLayout.shapes[0].y0);
        const [xs, ys] = lines[t];
        let best = 0, far = -1;
        for (let j = 10; j < xs.length - 10; j += 2) {
            let gap = Math.abs(ys[j] - theta);
            lines.forEach(([ox, oy], o) => {
                if (o === t) return;
                for (let k = Math.max(0, j - 150); k < Math.min(ox.length, j + 150); k++) {
                    gap = Math.min(gap, Math.hypot(ox[k] - xs[j], oy[k] - ys[j]));
                }
            });
            if (gap > far) { far = gap; best = j; }
        }
        const r = gd.querySelector('.nsewdrag').getBoundingClientRect();
        return {x: r.left + xs[best], y: r.top + ys[best], gap: far};
    }""", unit)


def drag_theta(page, to: str) -> None:
    """Drag the dashed θ line with the mouse to the top or the bottom of the plot."""
    box = page.locator("#pattern .layer-above .shapelayer path").first.bounding_box()
    plot = page.locator("#pattern .draglayer .nsewdrag").first.bounding_box()
    y = plot["y"] + 2 if to == "top" else plot["y"] + plot["height"] - 2
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] / 2, y, steps=8)
    page.mouse.up()


def test_match_view_click_lines_drag_theta_and_scroll_the_heatmaps(page, served):
    base, stores = served
    text = stores[0].text
    a = text.index('"a long')
    b = text.index('"', a + 1)
    open_view(page, base, f"?store=ov&unit={OV_STEP}&tab=pattern&sel={a}-{b + 1}&cells={OV_STEP}", "0:2000")
    cells, onset, legend = page.locator("#pat-cells"), page.locator("#pat-onset"), page.locator("#pattern .legendtext")
    expect(onset).to_have_text(f"on-set at θ = 0.5 σ: {OV_STEP} (1 of 1 cells)")
    expect(legend).to_have_count(1)
    expect(page.locator("#pattern .scatterlayer .trace")).to_have_count(3)  # the set's line, two grey candidates
    # Click the grey line of the rising quote cell: it joins the set.
    p = line_point(page, OV_RISE)
    assert p["gap"] > 8
    page.mouse.click(p["x"], p["y"])
    expect(cells).to_have_value(f"{OV_STEP}, {OV_RISE}")
    expect(page).to_have_url(re.compile(r"cells=1%3Ac%3A3%2C1%3Ah%3A5"))
    expect(onset).to_have_text(f"on-set at θ = 0.5 σ: {OV_STEP}, {OV_RISE} (2 of 2 cells)")
    expect(legend).to_have_count(2)
    # Click its line again, now coloured: it leaves the set (and is drawn grey, a candidate again).
    p = line_point(page, OV_RISE)
    assert p["gap"] > 8
    page.mouse.click(p["x"], p["y"])
    expect(cells).to_have_value(OV_STEP)
    expect(page).to_have_url(re.compile(r"cells=1%3Ac%3A3(&|$)"))
    expect(onset).to_have_text(f"on-set at θ = 0.5 σ: {OV_STEP} (1 of 1 cells)")
    expect(legend).to_have_count(1)
    expect(page.locator("#pattern .scatterlayer .trace")).to_have_count(3)
    # Drag θ up: the set stays, the count of cells on falls; down again: it comes back.
    title = page.locator("#pattern .gtitle")
    drag_theta(page, "top")
    expect(title).to_contain_text(": 0 of 1 cells on")
    expect(cells).to_have_value(OV_STEP)
    expect(legend).to_have_count(1)
    drag_theta(page, "bottom")
    expect(title).to_contain_text(": 1 of 1 cells on")
    expect(page.locator("#pat-thr")).to_have_value("0")  # the dragged θ (below 0: 0) in the box
    page.locator("#pat-thr").fill("0.5")  # the θ before the drags: it was never sent (dcc.Input's stale Enter)
    page.locator("#pat-thr").press("Enter")
    expect(onset).to_have_text(f"on-set at θ = 0.5 σ: {OV_STEP} (1 of 1 cells)")
    # Search: each match a heatmap, a column a character with its character under it, in a box that scrolls.
    page.get_by_role("button", name="Search").click()
    boxes = page.locator("#pat-matches .heat-box")
    expect(boxes.first).to_be_visible()
    wide = [i for i in range(boxes.count()) if boxes.nth(i).evaluate("b => b.scrollWidth > b.clientWidth + 20")]
    assert wide, "the long quote's heatmap is wider than the panel"
    box = boxes.nth(wide[0])
    expect(box.locator(".colorbar")).to_have_count(1)
    lo_hi = box.locator(".gtitle").text_content().replace(",", "")
    m_a, m_b = (int(x) for x in lo_hi.split("–"))
    lo, hi = max(0, m_a - 10), m_b + 10
    ticks = box.locator(".xtick text")
    assert [t.strip() for t in ticks.all_text_contents()] == [t.strip() for t in column_labels(text[lo:hi])]
    centres = box.evaluate("b => Array.from(b.querySelectorAll('.xtick text')).map(t => {"
                           "const r = t.getBoundingClientRect(); return r.width ? r.left + r.width / 2 : null; })")
    shown = [(i, c) for i, c in enumerate(centres) if c is not None]  # a space's label has no box
    i0, c0 = shown[0]
    np.testing.assert_allclose([c - c0 for _, c in shown], [(i - i0) * COLUMN_PX for i, _ in shown], atol=1.5)
    box.hover()
    page.mouse.wheel(400, 0)  # a sideways scroll, as a trackpad does
    expect(box).not_to_have_js_property("scrollLeft", 0)
    page.screenshot(path=str(ARTIFACTS / "match_view_heatmaps.png"))
