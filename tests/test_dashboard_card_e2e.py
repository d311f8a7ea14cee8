"""Issue 26, section 3: the unit card, driven as a person drives it in Chromium at 1280×800: open the Unit tab for
the unit colouring the text, see its explanation with its held-out score and interval, its contexts coloured as
the text is, the unit and its rule drawn together; type a rule (or a regex) and press Enter to see its score, a
bad one a message; press Ablate and see the progress, then the loss change with its interval and p-value.
Screenshots go to test-artifacts/dashboard/."""

from __future__ import annotations

import re

import pytest
from helpers import ARTIFACTS, QUOTE_UNIT, hex_rgb, make_quote_store, make_recorded_store, open_view, serve

from rnnviz.analysis.causal import ablate
from rnnviz.analysis.explain import top_contexts
from rnnviz.analysis.rule_score import score_rule
from rnnviz.model.checkpoint import load_checkpoint
from rnnviz.views.colours import PALETTES
from rnnviz.views.dashboard.unit_card import ABLATE_CHARS, ABLATE_DRAWS, CONTEXTS

sync_api = pytest.importorskip("playwright.sync_api")

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]
expect = sync_api.expect
expect.set_options(timeout=30_000)  # a page load on a busy 2-core machine can take 15 s

LENGTH = 24_000  # 12,000 held-out rows: enough bootstrap blocks for an interval


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    base = tmp_path_factory.mktemp("card")
    make_quote_store(base / "quote", LENGTH)  # no checkpoint: no ablation
    make_recorded_store(base, "rec")  # base/ckpt reachable
    yield from serve([base / "quote", base / "rec"])


@pytest.fixture
def page(browser, request):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    pg = browser.new_page(viewport={"width": 1280, "height": 800})
    pg.set_default_timeout(30_000)
    errors = []
    pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    pg.on("pageerror", lambda e: errors.append(str(e)))
    yield pg
    pg.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
    pg.close()
    assert errors == []


def open_card(page, base: str, query: str, drawn: str = "0:2000") -> None:
    open_view(page, base, query, drawn)
    page.get_by_text("Unit", exact=True).click()
    expect(page).to_have_url(re.compile("tab=unit"))
    expect(page.locator("#card-explained")).to_be_visible(timeout=60_000)


def background(locator) -> tuple[int, int, int]:
    rgb = locator.evaluate("e => getComputedStyle(e).backgroundColor")
    return tuple(int(c) for c in re.findall(r"\d+", rgb)[:3])


def test_the_card_shows_the_units_explanation_and_its_contexts_coloured(page, served):
    base, stores = served
    open_card(page, base, f"?store=quote&unit={QUOTE_UNIT}")
    expect(page).to_have_url(re.compile("tab=unit"))
    s = score_rule(stores[0], QUOTE_UNIT, "feature:in_quote")
    head = page.locator("#card-explained")
    expect(head).to_contain_text(f"explained: inside a double-quoted span (feature:in_quote, sign +): held-out r = "
                                 f"{s.score:.3f} [{s.score_lo:.3f}, {s.score_hi:.3f}]")
    rows = page.locator("#card-contexts tr.card-ctx")
    want = top_contexts(stores[0], QUOTE_UNIT, **CONTEXTS)  # a two-valued unit: two deciles hold its values
    expect(rows).to_have_count(len(want))
    assert rows.locator("td:first-child").all_inner_texts() == list(want["group"])
    assert list(want["group"])[:11] == ["top"] * 5 + ["random"] * 5 + ["decile 10"]
    values = [float(v) for v in rows.locator("td:nth-child(2)").all_inner_texts()]
    assert values == [round(v, 3) for v in want["value"]]
    top = rows.first.locator("td.tv > span")
    classes = top.evaluate_all("es => es.map(e => e.className)")
    assert set(" ".join(classes).split()) <= {"d0", "d32", "card-read"}  # ±1: the scale's two ends
    assert "d0" in " ".join(classes) and "d32" in " ".join(classes)
    red = page.locator("#card-contexts tr.card-ctx").first.locator("span.d32").first
    blue = page.locator("#card-contexts tr.card-ctx").first.locator("span.d0").first
    assert background(red) == hex_rgb(PALETTES["diverging"][32])  # the text view's colours
    assert background(blue) == hex_rgb(PALETTES["diverging"][0])
    read = rows.first.locator("span.card-read")
    expect(read).to_have_count(1)
    assert "d32" in read.get_attribute("class")  # the top context's read character is inside a quote: +1
    # the unit and the rule's values, one line each; the histogram
    expect(page.locator("#card-track .scatterlayer .trace")).to_have_count(2)
    expect(page.locator("#card-track .legendtext").nth(1)).to_have_text("rule: feature:in_quote")
    expect(page.locator("#card-hist .gtitle")).to_contain_text(f"{QUOTE_UNIT}: values")
    # no checkpoint: no ablation, and the card says why
    expect(page.locator("#card-ablate-go")).to_be_disabled()
    expect(page.locator("#card-ablate-note")).to_contain_text("checkpoint is not reachable")


def test_the_card_follows_the_unit_picked_in_the_top_bar(page, served):
    base, _ = served
    open_card(page, base, f"?store=quote&unit={QUOTE_UNIT}")
    page.locator("#unit-next").click()
    expect(page).to_have_url(re.compile("unit=1%3Ac%3A4"))
    expect(page.locator("#card-explained")).to_contain_text("1:c:4")


def test_typing_a_rule_and_enter_shows_its_held_out_score(page, served):
    base, stores = served
    open_card(page, base, f"?store=quote&unit={QUOTE_UNIT}")
    box = page.locator("#card-rule")
    box.click()
    box.press_sequentially('re:"[^"]*"', delay=50)  # a person's pace (at 0 ms React may drop the caret mid-render)
    box.press("Enter")
    s = score_rule(stores[0], QUOTE_UNIT, 're:"[^"]*"')
    score = page.locator("#card-score")
    expect(score).to_contain_text(f"your rule: inside a match of the regex \"[^\"]*\" (re:\"[^\"]*\", sign +): "
                                  f"held-out r = {s.score:.3f} [{s.score_lo:.3f}, {s.score_hi:.3f}] · AUROC "
                                  f"{s.auroc:.3f}")
    assert s.score_lo < s.score < s.score_hi < 1
    expect(page.locator("#card-track .legendtext").nth(1)).to_have_text('rule: re:"[^"]*"')
    box.fill('prev:"abcde"')
    box.press("Enter")
    expect(score).to_contain_text("Cannot score 'prev:\"abcde\"': bad rule id")
    assert score.get_attribute("class") == "msg"
    box.fill("re:zzzq")
    page.get_by_role("button", name="Score").click()
    expect(score).to_contain_text("is constant on the fitting half")


def test_ablate_shows_progress_then_the_effect_with_its_p_value(page, served):
    base, stores = served
    open_card(page, base, "?store=rec&unit=1:c:3", "0:600")
    note = page.locator("#card-ablate-note")
    expect(note).to_contain_text(f"beside {ABLATE_DRAWS} random units")
    page.get_by_role("button", name="Ablate").click()
    expect(page.locator("#card-progress")).to_be_visible()
    expect(page.locator("#card-progress")).to_contain_text("ablating:")
    result = page.locator("#card-ablation")
    expect(result).to_be_visible(timeout=120_000)
    expect(page.locator("#card-progress")).to_have_count(0)
    model = load_checkpoint(stores[1].checkpoint_path, device="cpu")
    text = model.vocab.prepare(stores[1].text[:ABLATE_CHARS], "skip")
    s = ablate(model, text, "1:c:3", random=ABLATE_DRAWS).summary()
    expect(result).to_contain_text(f"1:c+h:3 zeroed: loss {s['clean_loss']:.4f} → {s['ablated_loss']:.4f} nats/char, "
                                   f"change {s['delta']:+.4f}")
    expect(result).to_contain_text(f"{s['random_draws']} random units of its layer and kind: mean change "
                                   f"{s['random_delta_mean']:+.4f}, {s['random_delta_at_least']} hurt as much, "
                                   f"p = {s['p']:.3g}")
