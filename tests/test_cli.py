import json

import pytest
from click.testing import CliRunner

from rnnviz.cli import main
from rnnviz.store.reader import open_store

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny step loops: one torch thread (see conftest)

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
    assert r1.exit_code == 0 and r1.stdout == r2.stdout and r1.stdout.startswith("ROMEO:")
    assert len(r1.stdout) == len("ROMEO:") + 50 + 1 and r1.stderr.startswith(f"Using {out}/best (step 20, val loss ")
    r = run("eval", out, text_file, "--json")
    result = json.loads(r.stdout)
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
    assert r.exit_code == 2
    assert "'transformer' is not one of 'lstm', 'gru', 'rnn', 'mingru', 'mamba', 'slstm'" in r.output
    r = run("sample", tmp_path / "nothing")
    assert r.exit_code == 1 and r.output.strip() == f"Error: {tmp_path / 'nothing'}: no such checkpoint directory"
    r = run("sample", tiny_ckpt, "--clamp", "1:c:3")  # a checkpoint that exists: the clamp is what fails
    assert r.exit_code == 1 and r.output.count("\n") == 1 and "--clamp wants UNIT=VALUE" in r.output
    assert r.output == "Error: --clamp wants UNIT=VALUE, e.g. 1:c:42=1.0, got '1:c:3'\n"


def test_bad_clamp_syntax(tiny_ckpt):
    r = run("sample", tiny_ckpt, "--clamp", "0:c:1")
    assert r.exit_code == 1 and "--clamp wants UNIT=VALUE" in r.output


# --- one rule per option, every command ---

WINDOWED = ["record", "export", "ablate", "gradflow", "emergence"]


def _windowed_args(name, tiny_ckpt, text_file, tmp_path):
    """Real inputs for each command that takes --start/--length (a checkpoint with no snapshots for
    emergence, a missing store for export): a wrong window must be the error, and it comes first."""
    return {
        "record": ["record", tiny_ckpt, text_file, "--out", tmp_path / "st"],
        "export": ["export", tmp_path / "nostore", "--unit", "0:h:0", "--out", tmp_path / "x.html"],
        "ablate": ["ablate", tiny_ckpt, text_file, "--unit", "1:c:3"],
        "gradflow": ["gradflow", tiny_ckpt, text_file],
        "emergence": ["emergence", tiny_ckpt, text_file, "--feature", "in_quote"],
    }[name]


@pytest.mark.parametrize("name", WINDOWED)
@pytest.mark.parametrize("window,message", [
    (["--length", "0"], "Error: --length must be >= 1, got 0\n"),  # 0 was "to the end" in ablate and gradflow
    (["--length", "-5"], "Error: --length must be >= 1, got -5\n"),
    (["--start", "-1"], "Error: --start must be >= 0, got -1\n"),
])
def test_window_errors_are_the_same_everywhere(tmp_path, tiny_ckpt, text_file, name, window, message):
    r = run(*_windowed_args(name, tiny_ckpt, text_file, tmp_path), *window)
    assert (r.exit_code, r.output) == (1, message)
    assert not (tmp_path / "st").exists() and not (tmp_path / "x.html").exists()


def test_window_help_says_the_rule():
    for name in WINDOWED:
        help_text = " ".join(run(name, "--help").output.split())
        assert "--length INTEGER Characters to read from --start, >= 1 (a length past the end stops there)." \
            in help_text, name
    assert "stops there). Default: to the end." in " ".join(run("record", "--help").output.split())
    assert "stops there). Default: to the end." in " ".join(run("export", "--help").output.split())
    assert "[default: 20000]" in " ".join(run("ablate", "--help").output.split())


def test_a_length_past_the_end_stops_at_the_end(tmp_path, tiny_ckpt):
    from tests.conftest import TEXT

    p = tmp_path / "t.txt"
    p.write_text(TEXT * 3, encoding="utf-8")
    r = run("ablate", tiny_ckpt, p, "--unit", "1:c:3", "--random", "0", "--split", "all", "--start", "7",
            "--length", 10**9, "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["chars"] == len(TEXT) * 3 - 7 - 1


def test_export_input_errors_exit_1_not_2(tmp_path):
    for extra in ([], ["--unit", "0:h:0", "--feature", "in_quote"]):
        r = run("export", tmp_path / "st", "--out", tmp_path / "x.html", *extra)
        assert (r.exit_code, r.output) == (1, "Error: give either --unit (one or more) or --feature\n")


def test_device_is_one_option_with_one_default():
    with_device = sorted(name for name, cmd in main.commands.items() if any(p.name == "device" for p in cmd.params))
    assert with_device == ["ablate", "emergence", "eval", "gradflow", "record", "sample", "train"]
    for name in with_device:
        (p,) = [p for p in main.commands[name].params if p.name == "device"]
        assert (p.opts, p.default, list(p.type.choices)) == (["--device"], "auto", ["auto", "cpu", "cuda"]), name
        help_text = " ".join(run(name, "--help").output.split())
        assert "--device [auto|cpu|cuda] Where to run: auto (CUDA when available, else the CPU), cpu or cuda. " \
               "[default: auto]" in help_text, name


def test_threads_is_one_option_checked_as_parsed(tmp_path):
    with_threads = sorted(name for name, cmd in main.commands.items() if any(p.name == "threads" for p in cmd.params))
    assert with_threads == ["eval", "record", "train"]
    for name in with_threads:
        help_text = " ".join(run(name, "--help").output.split())
        assert ("--threads INTEGER Torch threads. Default: OMP_NUM_THREADS if set, else one per core no other process "
                "runs on") in help_text
        out = [] if name == "eval" else ["--out", tmp_path / "x"]
        r = run(name, "no-such-checkpoint", "no-such.txt", *out, "--threads", "0")
        assert (r.exit_code, r.output) == (1, "Error: --threads must be a whole number >= 1, got 0\n"), name


def test_train_options_come_from_train_config():
    import dataclasses

    from rnnviz.model.trainer import TrainConfig

    params = {p.name: p for p in main.commands["train"].params}
    assert [p.opts[0] for p in main.commands["train"].params] == [
        "text", "--out", "--cell", "--layers", "--hidden", "--dropout", "--seq-len", "--batch", "--optimizer", "--lr",
        "--weight-decay", "--schedule", "--warmup", "--clip", "--epochs", "--max-steps", "--time-budget",
        "--eval-every", "--snapshot-every", "--log-every", "--device", "--amp", "--seed", "--init-from", "--resume",
        "--force", "--nproc", "--threads"]
    for f in dataclasses.fields(TrainConfig):
        if f.metadata["cli"]:
            assert (params[f.name].default, params[f.name].help) == (f.default, f.metadata["help"]), f.name
        else:
            assert f.name not in params
    assert list(params["cell"].type.choices) == ["lstm", "gru", "rnn", "mingru", "mamba", "slstm"]
    assert list(params["amp"].type.choices) == ["auto", "off", "bf16", "fp16"]
    assert (params["lr"].default, params["seq_len"].default, params["epochs"].default) == (2e-3, 100, None)
    assert (params["schedule"].default, list(params["schedule"].type.choices)) == ("wsd", ["wsd", "cosine", "constant"])


def test_split_picks_the_part_of_the_text_a_window_counts_from(tmp_path, tiny_ckpt):
    """ablate, gradflow and emergence measure on the test split (the last 5%, never trained on) unless told;
    record reads the whole text unless told, and keeps where its window began in the file."""
    from tests.conftest import TEXT

    p = tmp_path / "t.txt"
    p.write_text(TEXT * 40, encoding="utf-8")  # 3,760 characters: test = the last 188
    n = len(TEXT) * 40
    test_chars = n - int(n * 0.95)
    r = run("ablate", tiny_ckpt, p, "--unit", "1:c:3", "--random", "0", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["chars"] == test_chars - 1
    r = run("ablate", tiny_ckpt, p, "--unit", "1:c:3", "--random", "0", "--split", "val", "--start", 10, "--json")
    assert json.loads(r.output)["chars"] == int(n * 0.95) - int(n * 0.90) - 10 - 1
    r = run("record", tiny_ckpt, p, "--out", tmp_path / "s", "--split", "test", "--start", 5)
    assert r.exit_code == 0, r.output
    st = open_store(tmp_path / "s")
    assert st.text == (TEXT * 40)[int(n * 0.95) + 5 :] and st.meta.recorder["start"] == int(n * 0.95) + 5
    r = run("ablate", tiny_ckpt, p, "--unit", "1:c:3", "--start", 188)
    assert r.exit_code == 1
    assert r.output == f"Error: --start 188 is past the end of the test split of {p} (188 characters)\n"
    assert "--split [all|train|val|test]" in run("gradflow", "--help").output


def test_every_command_that_prints_a_result_takes_format(tmp_path, tiny_ckpt):
    """--format table|csv|json everywhere a result is printed (--json stays as a hidden alias)."""
    from tests.conftest import TEXT

    p = tmp_path / "t.txt"
    p.write_text(TEXT * 40, encoding="utf-8")
    as_json = json.loads(run("eval", tiny_ckpt, p, "--format", "json").output)
    assert as_json == json.loads(run("eval", tiny_ckpt, p, "--json").output)
    csv = run("eval", tiny_ckpt, p, "--format", "csv").output.splitlines()
    assert csv[0] == "checkpoint,text,split,chars,streams,nats_per_char,bits_per_char"
    assert csv[1].split(",")[3:5] == [str(as_json["chars"]), "1"] and len(csv) == 2
    assert run("ngram", p, "--order", 3, "--format", "csv").output.splitlines()[0] == \
        "text,split,order,chars,nats_per_char,bits_per_char"
    feats = run("features", "--format", "csv").output.splitlines()
    assert feats[0] == "name,type,domain,definition" and feats[1].startswith("in_quote,binary,")
    ab = run("ablate", tiny_ckpt, p, "--unit", "1:c:3", "--random", 2, "--format", "csv").output.splitlines()
    assert len(ab) == 2 and "delta" in ab[0].split(",") and "random" not in ab[0].split(",")
    for cmd in ("eval", "ngram", "ablate", "features", "emergence", "find", "explain", "gradflow", "similar"):
        assert "--format [table|csv|json]" in run(cmd, "--help").output, cmd


def test_the_clis_colour_ranges_are_the_views(tmp_path):
    from rnnviz.cli import COLOUR_RANGES
    from rnnviz.views.colours import RANGES

    assert COLOUR_RANGES == tuple(RANGES)
