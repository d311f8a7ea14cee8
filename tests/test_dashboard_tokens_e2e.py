"""The dashboard on token stores in the system Chromium, driven as a person does (issue 25): the text of a
word-level store coloured token by token (read back from screenshot pixels), the hover panel naming the
token and its row, a mouse drag over a quote finding the planted unit, the find box, the layer table of the
user's module, the panels that need a model's logits hidden, and an external store's kinds. Every test fails
on a browser console error and leaves a screenshot under test-artifacts/dashboard/."""

from __future__ import annotations

import re
from collections import Counter

import pytest
from helpers import (
    NEG_UNIT,
    QUOTE_UNIT,
    checked_page,
    decode_png,
    hex_rgb,
    make_quote_store,
    make_token_store,
    open_view,
    serve,
    spans,
)

from rnnviz.views.colours import PALETTES
from rnnviz.views.display import visible_line

sync_api = pytest.importorskip("playwright.sync_api")

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]
expect = sync_api.expect
expect.set_options(timeout=30_000)  # a page load on a busy 2-core machine can take 15 s
RED, BLUE, WHITE = hex_rgb(PALETTES["diverging"][-1]), hex_rgb(PALETTES["diverging"][0]), (255, 255, 255)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    base = tmp_path_factory.mktemp("tokens-e2e")
    make_token_store(base / "tok")
    make_token_store(base / "ext", n=600, external=True)
    make_quote_store(base / "quotes", length=500)
    yield from serve([base / "tok", base / "ext", base / "quotes"])


@pytest.fixture
def page(browser, request):
    yield from checked_page(browser, request, 1500, 1100)


def quotes(text: str) -> list[tuple[int, int]]:
    return [m.span() for m in re.finditer(r'"[^"]*"', text)]


def background(locator) -> tuple[int, int, int]:
    """The colour behind a character: the commonest pixel of the top rows of its box (its transparent
    border shows its own background; the glyph's ink is lower)."""
    img = decode_png(locator.screenshot())
    (rgb, _), = Counter(map(tuple, img[:2].reshape(-1, 3).tolist())).most_common(1)
    return tuple(int(c) for c in rgb)


def drag(page, first: int, last: int) -> None:
    """Select the characters first..last of the text with the mouse, as a person does, in select-to-find mode."""
    page.get_by_label("select to find").check()
    a, b = spans(page).nth(first).bounding_box(), spans(page).nth(last).bounding_box()
    page.mouse.move(a["x"] + 1, a["y"] + a["height"] / 2)
    page.mouse.down()
    page.mouse.move(b["x"] + b["width"] / 2, b["y"] + b["height"] / 2, steps=5)
    page.mouse.move(b["x"] + b["width"] - 1, b["y"] + b["height"] / 2)
    page.mouse.up()


def test_each_tokens_characters_take_its_colour_and_hover_names_the_token(page, served):
    base, stores = served
    s = stores[0]
    open_view(page, base, "?store=tok&unit=1:c:3", "0:1500")
    assert page.evaluate("location.search") == "?store=tok&unit=1%3Ac%3A3&start=0"
    expect(page.locator("#window-label")).to_have_text("tokens 0–1,500 of 1,500")
    expect(page.locator("#store-pick")).to_contain_text("tok · lstm 2×8 · 1,500 tokens")
    expect(spans(page)).to_have_count(len(s.text))
    assert spans(page).evaluate_all("els => els.map(e => e.textContent).join('')") == s.text
    a, b = quotes(s.text)[0]
    r = s.rows_of_chars(a, a + 1)[0]  # the quote's first token
    word = s.text[s.spans[r, 0] : s.spans[r, 1]]
    for j in (a, a + 1, a + len(word) - 1):  # every character of a quoted token: the strongest red
        assert background(spans(page).nth(j)) == RED, j
    assert background(spans(page).nth(1)) == BLUE  # a word outside any quote: the strongest blue
    assert s.text[a + len(word)] == " " and background(spans(page).nth(a + len(word))) == WHITE  # between tokens
    spans(page).nth(a + 1).hover()
    expect(page.locator("#hover")).to_have_text(f"{QUOTE_UNIT} = 1.0\n#{r} {visible_line(word)}")
    spans(page).nth(a + len(word)).hover()  # a space between tokens: no tooltip of its own
    assert spans(page).nth(a + len(word)).get_attribute("title") is None
    expect(page.locator("#hover")).to_have_text(f"{QUOTE_UNIT} = 1.0\n#{r} {visible_line(word)}")


def test_dragging_over_a_quote_finds_the_planted_units(page, served):
    base, stores = served
    s = stores[0]
    open_view(page, base, "?store=tok&unit=0:h:0", "0:1500")
    a, b = quotes(s.text)[1]
    r0, r1 = s.rows_of_chars(a, b)
    drag(page, a, b - 1)
    expect(page.locator("#sel-a")).to_have_value(str(r0))
    expect(page.locator("#sel-b")).to_have_value(str(r1))
    units = page.locator("#sel-tables table").first.locator("tbody tr")
    expect(units.first).to_be_visible()
    assert sorted(units.locator("td:nth-child(2)").all_inner_texts()[:2]) == [QUOTE_UNIT, NEG_UNIT]
    expect(page).to_have_url(re.compile(f"&tab=sel&sel={r0}-{r1}$"))  # the view took the selection, in rows
    matches = page.locator("#match-table tbody tr")
    expect(matches.first).to_be_visible()
    x, y = (int(t.replace(",", "")) for t in matches.first.locator("td:nth-child(2)").inner_text().split("–"))
    assert s.text[s.spans[x, 0]] == '"' and s.text[s.spans[y - 1, 1] - 1] == '"' and (x, y) != (r0, r1)
    matches.first.click()  # the match's tokens outlined: every character from its first to its last
    expect(page.locator("#text > span.hl")).to_have_count(int(s.spans[y - 1, 1] - s.spans[x, 0]))
    units.filter(has_text=QUOTE_UNIT).click()
    expect(page.locator("#legend")).to_contain_text(f"{QUOTE_UNIT} cell state")
    page.locator("#find-input").fill("mat she")
    page.locator("#find-input").press("Enter")
    i = s.text.index("mat she", int(s.spans[x + 1, 0]))  # the next one after the outlined match
    expect(page.locator("#text > span.hl")).to_have_count(int(s.spans[s.rows_of_chars(i, i + 7)[1] - 1, 1]) - i)
    assert page.locator("#text > span.hl").first.get_attribute("title").split("\n")[1] == \
        f"#{s.rows_of_chars(i, i + 1)[0]} mat"


def test_layer_table_shown_and_the_logits_panels_hidden(page, served):
    base, stores = served
    open_view(page, base, "?store=tok&unit=0:c:7&tab=sample", "0:1500")
    table = page.locator("#layer-table")
    expect(table).to_be_visible()
    expect(table.locator("caption")).to_have_text("layers of WordLM")
    assert [r.locator("td").all_inner_texts() for r in table.locator("tbody tr").all()] == [
        ["0", "encoder.rnn", "LSTM", "6"], ["1", "decoder.rnn", "LSTM", "0"]]
    expect(page.locator("#no-predictions")).to_have_text(re.compile("^this store has no predictions"))
    expect(page.locator("#tabs > .tab")).to_have_count(9)
    expect(page.locator("#tab-sample")).to_be_hidden()
    expect(page.locator("#tab-emerge")).to_be_hidden()
    expect(page.locator("#tabs > .tab--selected")).to_have_text("Hypotheses")  # the link asked for Sample
    assert "tab=" not in page.url
    page.locator("#tabs > .tab", has_text="Plots").click()
    expect(page.locator("#hist .legendtext")).to_have_count(0)
    expect(page.locator("#gradflow-go")).to_be_hidden()
    expect(page.locator("#trace .scatterlayer .trace")).to_have_count(1)  # the unit; no loss row
    # the layer picker names the layer's submodule on hover
    expect(page.locator("#layer-pick-value span[title]")).to_have_attribute("title", "encoder.rnn (LSTM)")
    page.locator("#kind-pick").click()  # layer 0's h is 6 wide (a projection): unit 7 becomes its last, 5
    page.get_by_role("option", name="h", exact=True).click()
    expect(page.locator("#index-pick")).to_have_value("5")
    expect(page.locator("#legend")).to_contain_text("0:h:5 hidden state")
    page.locator("#index-pick").fill("7")
    page.locator("#index-pick").press("Enter")
    expect(page.locator("#status")).to_have_text("no unit '0:h:7' in tok: indices run from 0 to 5")
    page.locator("#store-pick").click()  # one of our char stores: every panel is back, no layer table
    page.get_by_role("option", name=re.compile("^quotes")).click()
    expect(page.locator("#tab-sample")).to_be_visible()
    expect(page.locator("#tab-emerge")).to_be_visible()
    expect(page.locator("#layer-table")).to_have_count(0)
    expect(page.locator("#window-label")).to_have_text("characters 0–500 of 500")


def test_an_external_store_shows_its_kinds(page, served):
    base, stores = served
    s = stores[1]
    open_view(page, base, "?store=ext&unit=1:y:3", "0:600")
    expect(page.locator("#store-info")).to_contain_text("states recorded elsewhere: kinds delta, y")
    expect(page.locator("#legend")).to_contain_text("1:y:3 external state · layer 1 · unit 3")
    page.locator("#kind-pick").click()
    expect(page.get_by_role("option").filter(has_not_text="select to find")).to_have_text(["delta", "y"])
    page.keyboard.press("Escape")
    a, _ = quotes(s.text)[0]
    assert background(spans(page).nth(a + 1)) == RED and background(spans(page).nth(0)) == BLUE
