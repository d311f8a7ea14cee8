import numpy as np
import pytest

from rnnviz.errors import RnnvizError
from rnnviz.model.data import BatchStream, read_text, split, text_window
from rnnviz.model.vocab import UnknownCharsError, Vocab


def test_vocab_round_trip_and_order():
    v = Vocab.from_text("hello, world\n")
    assert v.chars == sorted(set("hello, world\n"))
    ids = v.encode("world, hello\n")
    assert ids.dtype == np.int64
    assert ids.tolist() == [v.index[c] for c in "world, hello\n"]
    assert v.decode(ids) == "world, hello\n"
    assert Vocab.from_json(v.to_json()) == v


def test_unknown_chars_listed_with_counts_and_first_position():
    v = Vocab.from_text("abc ")
    with pytest.raises(UnknownCharsError) as e:
        v.encode("ab xyx")
    assert e.value.unknown == {"x": (2, 3), "y": (1, 4)}
    assert "'x' x2 (first at 3)" in str(e.value) and "'y' x1 (first at 4)" in str(e.value)


def test_unknown_policies():
    v = Vocab.from_text("abc ")
    assert v.prepare("a-b–c", "skip") == "abc"
    assert v.prepare("a-b", "replace: ") == "a b"
    with pytest.raises(RnnvizError, match="not in the vocabulary"):
        v.prepare("a-b", "replace:z")
    with pytest.raises(RnnvizError, match="error, skip or replace"):
        v.prepare("a-b", "drop")
    assert v.prepare("abc", "error") == "abc"


def test_vocab_rejects_duplicates_and_empty():
    with pytest.raises(RnnvizError, match="duplicate"):
        Vocab(["a", "a"])
    with pytest.raises(RnnvizError, match="at least one"):
        Vocab([])


def test_read_text_keeps_bom_and_crlf(tmp_path):
    p = tmp_path / "t.txt"
    p.write_bytes("\ufeffab\r\ncd\r\n".encode())
    text = read_text(p)
    assert text == "\ufeffab\r\ncd\r\n" and len(text) == 9


def test_read_text_errors(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"line one\nab\xffcd")
    with pytest.raises(RnnvizError, match=r"not valid UTF-8 \(byte 0xff at offset 11, line 2\)"):
        read_text(bad)
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    with pytest.raises(RnnvizError, match="the file is empty"):
        read_text(empty)
    with pytest.raises(RnnvizError, match="no such file"):
        read_text(tmp_path / "missing.txt")
    with pytest.raises(RnnvizError, match="is a directory"):
        read_text(tmp_path)


def test_split_is_90_5_5_in_file_order():
    text = "".join(chr(65 + i % 26) for i in range(1000))
    tr, va, te = split(text, "train"), split(text, "val"), split(text, "test")
    assert (len(tr), len(va), len(te)) == (900, 50, 50)
    assert tr + va + te == text
    with pytest.raises(RnnvizError, match="unknown split"):
        split(text, "dev")


def test_batch_stream_is_contiguous_across_steps():
    ids = np.arange(1000)
    s = BatchStream(ids, batch=4, seq_len=10)
    assert s.steps_per_epoch == 24  # (999 // 4) = 249 per stream, 24 windows of 10
    x0, y0 = s.get(0)
    x1, _ = s.get(1)
    assert x0.shape == (4, 10)
    np.testing.assert_array_equal(y0, x0 + 1)  # targets are the next character
    np.testing.assert_array_equal(x1[:, 0], x0[:, -1] + 1)  # step 1 continues step 0 in every stream
    np.testing.assert_array_equal(x0[:, 0], [0, 249, 498, 747])


def test_batch_stream_too_short():
    with pytest.raises(RnnvizError, match="text too short: 50 characters cannot fill one batch of 4 x 20"):
        BatchStream(np.arange(50), batch=4, seq_len=20)


def test_text_window_one_rule():
    text = "abc\u00e9\U0001f600fgh"  # code points, not bytes or UTF-16 units
    assert text_window(text, 2, 3) == "c\u00e9\U0001f600"
    assert text_window(text) == text and text_window(text, 5) == "fgh"  # no length: to the end
    assert text_window(text, 5, 10**9) == "fgh"  # a length past the end stops at the end
    cases = [((0, 0), "--length must be >= 1, got 0"), ((0, -3), "--length must be >= 1, got -3"),
             ((-1, None), "--start must be >= 0, got -1"),
             ((8, None), "--start 8 is past the end of t.txt (8 characters)")]
    for (start, length), message in cases:
        with pytest.raises(RnnvizError) as e:
            text_window(text, start, length, source="t.txt")
        assert str(e.value) == message
