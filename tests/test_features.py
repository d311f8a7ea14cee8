"""Every built-in feature against hand-written strings, value by value."""

import re
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from rnnviz.analysis.features import FEATURES, code, compute_feature, regex_feature, resolve
from rnnviz.errors import RnnvizError


def bits(s: str) -> list[int]:
    return [int(ch) for ch in s]


def values(name, text) -> list[int]:
    v = compute_feature(name, text)
    assert v.dtype == np.float32 and v.shape == (len(text),)
    return v.astype(int).tolist()


# --- prose ---


def test_in_quote_spans_paragraph_breaks_and_unbalanced_quotes():
    text = 'a "b c" d "e\n\nf "g" h" i'
    assert values("in_quote", text) == bits("001111000011100011000111")
    # An unbalanced quote is closed by the paragraph break, at its second line end (CRLF too).
    text = 'x "unbal\r\n\r\nnext "q"'
    assert values("in_quote", text) == bits("00111111110000000110")
    # A single line end does not break, a blank line of spaces does; curly quotes open and close.
    text = '"a\nb" \u201cc\n \n\u201dd'
    assert values("in_quote", text) == bits("111100" + "1111" + "0" + "00")


def test_in_quote_curly_close_without_open_stays_outside():
    assert values("in_quote", "a\u201d b \u201cc\u201d") == bits("00000110")


def test_column_and_to_line_end_count_crlf_as_one_line_end():
    text = "ab\r\ncd\n\nx"
    assert values("column", text) == [1, 2, 0, 0, 1, 2, 0, 0, 1]
    assert values("to_line_end", text) == [1, 0, 0, 2, 1, 0, 0, 1, 0]
    # A lone \r is a line end too.
    assert values("column", "a\rbc") == [1, 0, 1, 2]
    assert values("to_line_end", "a\rbc") == [0, 2, 1, 0]


def test_word_pos():
    assert values("word_pos", "don't go_on 12x") == [1, 2, 3, 4, 5, 0, 1, 2, 0, 1, 2, 0, 1, 2, 3]
    assert values("word_pos", "'tis 'a' caf\u00e9") == [0, 1, 2, 3, 0, 0, 1, 0, 0, 1, 2, 3, 4]


def test_in_parens_ignores_stray_closers_and_resets_at_paragraphs():
    assert values("in_parens", "a (b (c) d) e) f (g\n\nh") == bits("0011111111000000011100")


def test_sentence_start():
    text = 'Hi. Yes!" No? "ok. a.b end.'
    assert values("sentence_start", text) == bits("001100011100110001100000000")
    assert values("sentence_start", "So.\r\n\r\nNew") == bits("0011111000")


# --- code ---

CODE = (
    "int f() {\n"
    '  if (a && (b)) {\n'
    '    x = "}{";\n'
    "  } else if (c)\n"
    "    y(); // if (z) {\n"
    "  /* if */ z;\n"
    "}\n"
)


def line_values(name, text=CODE) -> list[list[int]]:
    """Per line of ``text`` (line end included): the feature's values."""
    v, out, pos = values(name, text), [], 0
    for line in text.splitlines(keepends=True):
        out.append(v[pos : pos + len(line)])
        pos += len(line)
    return out


def test_in_if_braced_and_single_statement():
    got = line_values("in_if")
    assert got[0] == [0] * 10
    assert got[1] == bits("00" + "1" * 16)  # from the i of `if` on, line end included
    assert got[2] == [1] * 14
    assert got[3] == bits("11" + "0000000" + "1111111")  # `}` closes; `else` is outside; `if (c)\n`
    assert got[4] == bits("11111110" + "0" * 13)  # body `y()` up to its `;`; the comment's if is not code
    assert got[5] == [0] * 14 and got[6] == [0, 0]


def test_in_if_nested_else_do_while_and_for():
    text = "if (a) if (b) x; else y; z; if (q) do { a; } while (b); k; while(1) if (x) for (;;) {a;} b;"
    want = "1" * 23 + "0" * 5 + "1" * 26 + "0" * 14 + "1" * 19 + "0" * 4
    assert values("in_if", text) == bits(want)


def test_in_if_skips_preprocessor_identifiers_and_strings():
    text = '#if X\nifdef(a); elif (b); "if (c) {}"; if(d){e;}'
    v = values("in_if", text)
    start = text.index("if(d)")
    assert v == [0] * start + [1] * (text.index("}", start) - start) + [0]


def test_in_if_unclosed_runs_to_the_end():
    assert values("in_if", "x; if (a) { b;") == bits("000" + "1" * 11)


def test_in_if_follows_nesting_to_its_limit():
    deep = "if (a) " * 201 + "b; c;"  # 201 nested bodies: the parser follows all of them
    assert values("in_if", deep) == [1] * (len(deep) - 4) + [0] * 4
    deeper = "if (a) " * 203 + "b; c;"  # past the limit the outer ifs run to the end
    assert values("in_if", deeper) == [1] * len(deeper)


def test_lexer_cache_is_keyed_by_the_text_and_read_only():
    a = CODE * 20
    b = "".join(list(a))  # the same text in another object
    assert a == b and a is not b
    lexed = code._lex(a)
    assert code._lex(b) is lexed  # keyed by content, not by id() (which a freed object hands on)
    assert not any(x.flags.writeable for x in (lexed.code, lexed.comment, lexed.string))
    assert compute_feature("in_comment", a).flags.writeable  # each caller gets its own copy


def test_code_features_agree_across_threads():
    texts = [CODE.replace("a &&", f"a{i} &&") * (5 + i) for i in range(6)]
    names = [n for n, f in FEATURES.items() if f.domain == "code"]
    want = {t: [compute_feature(n, t) for n in names] for t in texts}
    with ThreadPoolExecutor(6) as pool:
        got = list(pool.map(lambda t: (t, [compute_feature(n, t) for n in names]), texts * 5))
    for t, vals in got:
        for n, w, g in zip(names, want[t], vals, strict=True):
            np.testing.assert_array_equal(g, w, err_msg=n)


def test_brace_and_paren_depth_ignore_comments_and_strings():
    brace = [max(line) for line in line_values("brace_depth")]
    assert brace == [1, 2, 2, 2, 1, 1, 0]
    assert values("brace_depth", "} { '}' }") == bits("001111110")
    assert values("paren_depth", 'f(a, (b), ")") /* ( */ )') == [0, 1, 1, 1, 1, 2, 2, 1, 1, 1, 1, 1, 1, 0] + [0] * 10


def test_in_comment_block_and_line_comments():
    got = line_values("in_comment")
    assert got[4] == bits("0" * 9 + "1" * 11 + "0")  # `// if (z) {` up to the line end
    assert got[5] == bits("00" + "1111111" + "0" + "0000")  # `/* if *` then the closing / is outside
    # A multi-line block comment, a // inside it, "/*" inside a string, and an unterminated comment.
    text = 'a /* x\n// y */ "/*" b /* open'
    assert values("in_comment", text) == bits("00" + "1" * 11 + "0" + "0" * 8 + "1" * 7)


def test_in_string_escapes_char_literals_and_line_ends():
    text = 'a "b\\"c\\\\" d "unterm\ne \'"\' f "x\\\ny" g'
    want = "00" + "1111111" + "0" + "000" + "1111111" + "0" + "00" + "000" + "000" + "11111" + "0" + "00"
    assert values("in_string", text) == bits(want)
    assert values("in_string", '/* "no" */ "yes"') == bits("00000000000" + "1111" + "0")


def test_indent_tabs_and_crlf():
    assert [max(line) for line in line_values("indent")] == [0, 2, 4, 2, 4, 2, 0]
    text = "\t x\r\n  \ty\n"
    assert values("indent", text) == [8, 9, 9, 9, 9, 1, 2, 8, 8, 8]


# --- targets: the characters a hypothesis predicts ---


def test_targets_point_at_the_character_each_hypothesis_predicts():
    def predicted(name, text):
        f = FEATURES[name]
        return "".join(text[t + 1] for t in np.flatnonzero(f.targets(text, f.fn(text))))

    assert predicted("in_quote", 'a "bc" d "e"') == '""'
    assert predicted("to_line_end", "ab\r\ncd\nx") == "\r\n"
    assert predicted("column", "ab\ncd\n") == "\n\n"
    assert predicted("in_if", "if (a) { b; } if (c) d;") == "};"
    assert predicted("brace_depth", "{ { } }") == "}}"
    assert predicted("indent", "  a\n\tb\n\n") == "ab"
    assert predicted("word_pos", "ab, cd!") == ",!"


# --- registry, user features ---


def test_every_feature_is_documented_and_typed():
    assert set(FEATURES) == {
        "in_quote", "column", "to_line_end", "word_pos", "in_parens", "sentence_start",
        "in_if", "in_if_cond", "in_if_body", "if_end_line", "brace_depth", "paren_depth", "in_comment",
        "in_string", "indent",
    }
    for name, f in FEATURES.items():
        assert f.name == name and f.type in ("binary", "numeric") and f.domain in ("prose", "code")
        assert len(f.summary) > 40 and "\n" not in f.summary
        v = f.fn(CODE + 'He said "hi." (ok)\r\n')
        if f.type == "binary":
            assert set(np.unique(v)) <= {0.0, 1.0}, name


def test_each_builtin_lives_in_the_module_of_its_domain():
    for f in FEATURES.values():
        assert f.fn.__module__ == f"rnnviz.analysis.features.{f.domain}", f.name


def test_empty_text_gives_empty_features():
    for name in FEATURES:
        assert compute_feature(name, "").shape == (0,)


def test_regex_marks_match_spans():
    assert values("re:if \\(", "if (a) xif (b)") == bits("11110000111100")
    assert compute_feature(re.compile("A", re.I), "aba").tolist() == [1, 0, 1]
    assert values("re:x*", "abc") == [0, 0, 0]  # empty matches mark nothing


def test_catastrophic_regex_is_stopped():
    with pytest.raises(RnnvizError, match=r"ran longer than 0.5 s and was stopped"):
        regex_feature("(a|aa)+$", "a" * 40 + "b", timeout=0.5)


@pytest.mark.parametrize(
    "spec,message",
    [
        ("re:(", "bad regular expression '\\('"),
        ("re:" + "a" * 1001, "the limit is 1000"),
        ("nope", "unknown feature 'nope'"),
        (lambda t: np.zeros(3), "returned shape \\(3,\\), expected \\(5,\\)"),
        (lambda t: np.full(len(t), np.nan), "NaN or infinite"),
        (42, "not int"),
    ],
)
def test_bad_feature_specs(spec, message):
    with pytest.raises(RnnvizError, match=message):
        compute_feature(spec, "hello")


def test_callable_feature_type_is_inferred():
    f, v = resolve(lambda t: [ch == "l" for ch in t], "hello")
    assert f.type == "binary" and v.tolist() == [0, 0, 1, 1, 0]
    f, v = resolve(lambda t: np.arange(len(t)) / 2, "hello")
    assert f.type == "numeric" and v[-1] == 2.0
