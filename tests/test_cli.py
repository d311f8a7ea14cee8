import json

import pytest
from click.testing import CliRunner

from rnnviz.cli import main

SMALL = ["--layers", "1", "--hidden", "8", "--batch", "4", "--seq-len", "8", "--eval-every", "10"]


@pytest.fixture
def text_file(tmp_path):
    p = tmp_path / "t.txt"
    p.write_text("ROMEO: hello there, fair one.\nJULIET: good night, good night!\n" * 40, encoding="utf-8")
    return p


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_every_command_has_help_with_an_example():
    for name in main.commands:
        r = run(name, "--help")
        assert r.exit_code == 0, name
        assert "Example" in r.output and f"rnnviz {name}" in r.output, f"{name} --help lacks an example"


def test_train_sample_eval(tmp_path, text_file):
    out = tmp_path / "run"
    r = run("train", text_file, "--out", out, *SMALL, "--max-steps", "20")
    assert r.exit_code == 0, r.output
    assert "done: 20 steps" in r.output and (out / "best" / "model.safetensors").exists()
    r1 = run("sample", out, "--prime", "ROMEO:", "--length", "50", "--seed", "1", "--temperature", "0.8")
    r2 = run("sample", out, "--prime", "ROMEO:", "--length", "50", "--seed", "1", "--temperature", "0.8")
    assert r1.exit_code == 0 and r1.output == r2.output and r1.output.startswith("ROMEO:")
    assert len(r1.output) == len("ROMEO:") + 50 + 1
    r = run("eval", out, text_file, "--json")
    result = json.loads(r.output)
    assert result["chars"] == len(text_file.read_text()) and result["split"] == "all"
    assert result["bits_per_char"] == pytest.approx(result["nats_per_char"] / 0.6931471805599453)
    r = run("train", text_file, "--out", out, "--resume", "--max-steps", "30")
    assert r.exit_code == 0 and "done: 30 steps" in r.output


@pytest.mark.parametrize(
    "content,args,message",
    [
        (b"abc\xfe\xff", [], "not valid UTF-8 (byte 0xfe at offset 3, line 1)"),
        (b"", [], "the file is empty"),
        (b"hello world " * 100, ["--hidden", "0"], "--hidden must be >= 1, got 0"),
        (b"hi there", [], "text too short for a validation split (8 characters)"),
        (b"hello world " * 3, [], "text too short: 32 characters cannot fill one batch of 4 x 8"),
    ],
)
def test_train_errors_are_one_line(tmp_path, content, args, message):
    p = tmp_path / "bad.txt"
    p.write_bytes(content)
    r = run("train", p, "--out", tmp_path / "run", *SMALL, *args, "--max-steps", "5")
    assert r.exit_code == 1
    assert r.output.count("\n") == 1 and r.output.startswith("Error: ") and message in r.output
    assert "Traceback" not in r.output
    assert not (tmp_path / "run" / "best").exists()


def test_unknown_cell_and_missing_checkpoint(tmp_path, text_file, tiny_ckpt):
    r = run("train", text_file, "--out", tmp_path / "run", "--cell", "transformer")
    assert r.exit_code == 2 and "'transformer' is not one of 'lstm', 'gru', 'rnn'" in r.output
    r = run("sample", tmp_path / "nothing")
    assert r.exit_code == 1 and r.output.strip() == f"Error: {tmp_path / 'nothing'}: no such checkpoint directory"
    r = run("sample", tiny_ckpt, "--clamp", "1:c:3")  # a checkpoint that exists: the clamp is what fails
    assert r.exit_code == 1 and r.output.count("\n") == 1 and "--clamp wants UNIT=VALUE" in r.output


def test_bad_clamp_syntax(tiny_ckpt):
    r = run("sample", tiny_ckpt, "--clamp", "0:c:1")
    assert r.exit_code == 1 and "--clamp wants UNIT=VALUE" in r.output
