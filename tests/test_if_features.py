"""The C tokenizer and the if features (in_if_cond, in_if_body, if_end_line, in_if) on hand-written C, character by
character."""

import numpy as np

from rnnviz.analysis.features import FEATURES, compute_feature
from rnnviz.analysis.features.ctokens import tokenize


def masked(name: str, text: str) -> str:
    """``text`` with the characters outside the feature shown as ``.``; a line end stays a line end, and one
    inside the feature is shown as ``$`` before it."""
    v = compute_feature(name, text)
    assert v.dtype == np.float32 and v.shape == (len(text),) and set(np.unique(v)) <= {0.0, 1.0}
    out = []
    for ch, on in zip(text, v, strict=True):
        if ch in "\r\n":
            out.append("$" + ch if on else ch)
        else:
            out.append(ch if on else ".")
    return "".join(out)


# --- the tokenizer ---


def test_tokens_kinds_and_offsets():
    text = "a->b += 'x' /* if */ \"s\\\"\" ## 1.5e+3 ... x_1\n"
    got = [(t.kind, t.text, t.start) for t in tokenize(text).code]
    assert got == [
        ("ident", "a", 0), ("punct", "->", 1), ("ident", "b", 3), ("punct", "+=", 5), ("char", "'x'", 8),
        ("string", '"s\\""', 21), ("punct", "##", 27), ("number", "1.5e+3", 30), ("punct", "...", 37),
        ("ident", "x_1", 41),
    ]


def test_directives_are_dropped_except_define_bodies():
    text = "#if A && \\\n  B\n  # define M(x) \\\n y(x)\nz; /* c */ #x\n#endif"
    toks = tokenize(text)
    # A continued #if, an indented #define (its body kept, the line continuation dropped), a # after code
    # (not a directive), an #endif that ends the text.
    assert toks.directives == ((0, 14), (17, 38), (53, 59))
    assert [(t.text, t.group) for t in toks.code] == [
        ("M", 1), ("(", 1), ("x", 1), (")", 1), ("y", 1), ("(", 1), ("x", 1), (")", 1),
        ("z", -1), (";", -1), ("#", -1), ("x", -1),
    ]


# --- the labels ---

ELSE_IF = (
    "if (a)\n"
    "\tx();\n"
    "else if (b == (c)) {\n"
    "\ty;\n"
    "} else\n"
    "\tz;\n"
    "w;\n"
)


def test_else_if_chain():
    assert masked("in_if_cond", ELSE_IF) == (
        "...(a.\n"
        ".....\n"
        "........(b == (c)...\n"
        "...\n"
        "......\n"
        "...\n"
        "..\n"
    )
    # The then-branches only: `else` and the last else branch are outside every body.
    assert masked("in_if_body", ELSE_IF) == (
        "......\n"
        ".x().\n"  # the blanks between ) and the body are outside it
        "...................{$\n"
        "\ty;$\n"
        "......\n"
        "...\n"
        "..\n"
    )
    assert masked("in_if", ELSE_IF) == (
        "if (a)$\n"
        "\tx().\n"
        ".....if (b == (c)) {$\n"
        "\ty;$\n"
        "......\n"
        "...\n"
        "..\n"
    )
    # Both ifs end at the ; of the last else branch: one line, its line end excluded.
    assert masked("if_end_line", ELSE_IF) == "......\n.....\n....................\n...\n......\n\tz;\n..\n"


def test_nested_parens_and_an_if_without_braces():
    text = "if (f(a, (b)) && c[(d)]) if (e) g(); else h(); k;"
    assert masked("in_if_cond", text) == "...(f(a, (b)) && c[(d)].....(e..................."
    # The outer body is the inner if, its else included; the inner body is g().
    assert masked("in_if_body", text) == ".........................if (e) g(); else h()...."
    assert masked("if_end_line", text) == text


def test_if_end_line_marks_the_last_closing_line_only():
    text = "if (a) {\r\n\tb;\r\n} else {\r\n\tc;\r\n}\r\nd;\r\n"
    assert masked("if_end_line", text) == "........\r\n...\r\n........\r\n...\r\n}\r\n..\r\n"
    assert masked("in_if_body", text) == ".......{$\r$\n\tb;$\r$\n........\r\n...\r\n.\r\n..\r\n"


def test_nested_ifs_loops_and_dangling_else():
    text = "if (a) { for (;;) if (b) c; else d; do e; while (f); }\ng;\n"
    assert masked("in_if_body", text) == ".......{ for (;;) if (b) c; else d; do e; while (f); .\n..\n"
    assert masked("in_if_cond", text) == "...(a................(b...............................\n..\n"
    assert masked("if_end_line", text) == text[:-4] + "\n..\n"


def test_preprocessor_comments_strings_and_identifiers_do_not_count():
    text = (
        "#if defined(X) && (Y) \\\n"
        "    || if (q)\n"
        "/* if (a) { */ s = \"if (b) x;\"; c = 'i';\n"
        "#ifdef if\n"
        "// if (c) y;\n"
        "#endif\n"
        "ifx (d); elif (e); t.if_ = 1;\n"
    )
    for name in ("in_if", "in_if_cond", "in_if_body", "if_end_line"):
        assert not compute_feature(name, text).any(), name


def test_macros():
    text = (
        "#define CHECK(x) \\\n"
        "\tif (x) \\\n"
        "\t\treturn -1\n"
        "CHECK(a);\n"
        "if (unlikely(!b)) list_for_each(p, h) { q(p); }\n"
        "r;\n"
    )
    # The macro's if is an if, and its body ends with the macro (it never reaches a ;: no end line).
    assert masked("in_if_cond", text) == (
        "..................\n"
        "....(x...\n"
        "...........\n"
        ".........\n"
        "...(unlikely(!b)...............................\n"
        "..\n"
    )
    assert masked("in_if_body", text) == (
        "..................\n"
        ".........\n"
        "..return -1\n"
        ".........\n"
        "..................list_for_each(p, h) { q(p); .\n"
        "..\n"
    )
    # in_if too: the macro's if stops at the macro's end instead of running on to the next ; of the code.
    assert masked("in_if", text) == (
        "..................\n"
        ".if (x) \\$\n"
        "\t\treturn -1\n"
        ".........\n"
        "if (unlikely(!b)) list_for_each(p, h) { q(p); .\n"
        "..\n"
    )
    assert masked("if_end_line", text) == (
        "..................\n"
        ".........\n"
        "...........\n"
        ".........\n"
        "if (unlikely(!b)) list_for_each(p, h) { q(p); }\n"
        "..\n"
    )


def test_an_unclosed_if_runs_to_the_end_and_marks_no_end_line():
    text = "x; if (a) { b;\n"
    assert masked("in_if_body", text) == "..........{ b;$\n"
    assert masked("in_if_cond", "if (a(b)") == "...(a(b)"
    assert not compute_feature("if_end_line", text).any()


def test_if_features_predict_their_closing_characters():
    text = "if (a) { b; }\nif (c) d;\n"

    def predicted(name):
        f = FEATURES[name]
        return "".join(text[t + 1] for t in np.flatnonzero(f.targets(text, f.fn(text))))

    assert predicted("in_if_cond") == "))"
    assert predicted("in_if_body") == "};"
    assert predicted("if_end_line") == "\n\n"
