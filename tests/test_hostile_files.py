"""Hostile inputs, round two (issue 15), classes 1-3 and 6: a regex that outlives its parent, files a store
or checkpoint names that lie outside it (symlinks, FIFOs, devices, `..` in kinds), sizes trusted before
they are checked, and the ordinary actions that ended in a traceback. Each case: one `Error: ...` line and
exit 1 (or, where the input is fine, the right answer), within a bounded time and memory, nothing left
behind. The commands that could hang or exhaust memory before the fix run in a subprocess with a time
limit and a 3 GB address-space limit."""

from __future__ import annotations

import json
import math
import os
import resource
import signal
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import SMALL_TEXT as TEXT
from helpers import alive, children, cli, edit_manifest, one_line_error, small_store, wait_for
from safetensors.torch import save_file

from rnnviz.analysis.features import REGEX_MAX_PATTERN, check_regex, regex_feature
from rnnviz.errors import RnnvizError
from rnnviz.model.checkpoint import save_checkpoint, sha256_file
from rnnviz.model.sampling import sample
from rnnviz.model.trainer import TrainConfig
from rnnviz.store.reader import open_store
from rnnviz.views.dashboard import stores as dash_stores

pytestmark = pytest.mark.usefixtures("one_thread")
ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}  # the children: one thread, this checkout


def _limits(fsize: int | None):
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))  # /dev/zero read whole stops at 3 GB
        if fsize is not None:  # a "disk" that is full at fsize bytes a file
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # then a write fails with EFBIG, as on a full disk
    return apply


def run(*args, timeout: float = 60, fsize: int | None = None) -> subprocess.CompletedProcess:
    """``python -m rnnviz ARGS`` in a child with bounded time and memory; output as text."""
    return subprocess.run([sys.executable, "-m", "rnnviz", *map(str, args)], cwd=ROOT, env=ENV, text=True,
                          capture_output=True, timeout=timeout, preexec_fn=_limits(fsize))


def start(*args) -> subprocess.Popen:
    """``python -m rnnviz ARGS`` started in a child, its output piped as text."""
    return subprocess.Popen([sys.executable, "-m", "rnnviz", *map(str, args)], cwd=ROOT, env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@contextmanager
def started(*args) -> Iterator[subprocess.Popen]:
    """:func:`start` for the block; the child is killed on the way out if it is still running."""
    proc = start(*args)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()


def one_line(r: subprocess.CompletedProcess, *needles: str) -> None:
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    err = [line for line in r.stderr.replace("\r", "\n").splitlines() if line.strip()]
    assert err and err[-1].startswith("Error: ") and "Traceback" not in r.stderr, r.stderr
    for n in needles:
        assert n in err[-1], err[-1]


# --- 1. a regex cannot outlive its parent ---


def test_a_stopped_regex_is_a_clear_error_within_its_limit_and_no_process(monkeypatch):
    def no_fork():
        raise AssertionError("a process was forked to match a regex")

    monkeypatch.setattr(os, "fork", no_fork)
    before = children(os.getpid())
    t0 = time.monotonic()
    with pytest.raises(RnnvizError, match=r"^the regular expression '\(a\|aa\)\+\$' ran longer than 0.5 s and was "
                       r"stopped; make it simpler$"):
        regex_feature("(a|aa)+$", "a" * 60 + "b", timeout=0.5)
    assert time.monotonic() - t0 < 5  # stopped near its limit (not a timing test: 10x slack)
    assert children(os.getpid()) == before  # matched in this process: nothing forked


def test_sigterm_to_find_during_a_catastrophic_regex_leaves_no_process(tmp_path):
    text = "x" + "a" * 60 + "b\n"
    st = small_store(tmp_path / "st", text=text)
    proc = start("find", st.path, "--regex", "(a|aa)+$")
    seen: set[int] = set()

    def matching() -> bool:  # the matcher is loaded (or, before the fix, its worker forked)
        nonlocal seen
        seen |= children(proc.pid)
        maps = Path(f"/proc/{proc.pid}/maps")
        return bool(seen) or (maps.exists() and "_regex" in maps.read_text())

    try:
        wait_for(matching, timeout=120)
        time.sleep(1.0)
        seen |= children(proc.pid)
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 130 and "Interrupted" in err and "Traceback" not in err, err
        time.sleep(0.2)
        assert not [p for p in seen if alive(p)], "a process of ours outlived its parent"
        assert seen == set()  # and there never was one
    finally:
        for p in seen:
            if alive(p):
                os.kill(p, signal.SIGKILL)
        if proc.poll() is None:
            proc.kill()


def test_find_answers_the_issue_s_patterns_at_once(tmp_path):
    # (a+)+$ and (\w+\s?)+$ backtrack for ever in Python's re; the regex package answers them at once.
    st = small_store(tmp_path / "st", text="x" + "a" * 48 + "!\nab aaa\n")  # fails on the run, matches at the end
    for pattern in ("(a+)+$", r"(\w+\s?)+$"):
        r = cli("find", st.path, "--regex", pattern, "--top", 1, "--format", "json")
        assert r.exit_code == 0, r.output
        assert json.loads(r.output)[0]["feature"] == f"re:{pattern}"


def test_one_check_for_every_user_regex():
    assert dash_stores.check_regex is check_regex and dash_stores.MAX_PATTERN == REGEX_MAX_PATTERN == 1000
    # regex expands counted repeats when compiling (seconds and GBs for this): refused before compiling.
    t0 = time.monotonic()
    with pytest.raises(RnnvizError, match=r"repeats too much \(1,000,000,000 items.*the limit is 100,000\)"):
        check_regex("(?:(?:a{1000}){1000}){1000}")
    assert time.monotonic() - t0 < 5
    assert check_regex("(?:a{100}){100}").pattern == "(?:a{100}){100}"
    with pytest.raises(RnnvizError, match="bad regular expression"):
        check_regex("(")
    # Flags keep their meaning across the two modules (re.ASCII is not regex.V1).
    import re

    assert regex_feature(re.compile(r"\w+", re.ASCII), "aé b").tolist() == [1, 0, 0, 1]
    assert regex_feature(re.compile("A", re.I), "aba").tolist() == [1, 0, 1]


# --- 2. every file a store or checkpoint names is a regular file inside it ---


@pytest.fixture
def secret(tmp_path) -> Path:
    p = tmp_path / "secret.txt"
    p.write_text("TOP SECRET " * 50, encoding="utf-8")
    return p


def test_a_symlinked_array_is_not_embedded_in_an_export(tmp_path, secret):
    st = small_store(tmp_path / "st")
    arr = st.path / "L0.h.f16"
    outside = tmp_path / "outside.bin"
    outside.write_bytes(b"S" * arr.stat().st_size)  # the same size: the size check alone passes it
    arr.unlink()
    arr.symlink_to(outside)
    with pytest.raises(RnnvizError, match=r"L0.h.f16: is a symbolic link"):
        open_store(st.path)
    one_line_error(cli("export", st.path, "--unit", "0:h:0", "--out", tmp_path / "x.html"), "symbolic link")
    assert not (tmp_path / "x.html").exists()


def test_a_symlinked_text_is_not_shown(tmp_path):
    st = small_store(tmp_path / "st")
    secret = tmp_path / "secret.txt"
    secret.write_text("S" * len(TEXT), encoding="utf-8")  # as many characters as the store's text
    (st.path / "text.txt").unlink()
    (st.path / "text.txt").symlink_to(secret)
    one_line_error(cli("export", st.path, "--unit", "0:h:0", "--out", tmp_path / "x.html"), "symbolic link")
    assert not (tmp_path / "x.html").exists()


@pytest.mark.parametrize("kind", ["h/../../../outside", "../h", "h\u0000", "x", "c"])
def test_kind_names_cannot_build_paths(tmp_path, kind):
    st = small_store(tmp_path / "st")
    m = json.loads((st.path / "manifest.json").read_text())
    m["kinds"] = ["h", kind] if kind != "c" else ["h", "c", "c"]  # "c" twice: a duplicate
    (st.path / "manifest.json").write_text(json.dumps(m))
    (tmp_path / "outside").mkdir(exist_ok=True)
    with pytest.raises(RnnvizError, match=r"manifest field missing or malformed \(kinds must be distinct kinds "
                       r"of a lstm \(h, c, i, f, g, o\)"):
        open_store(st.path)


@pytest.mark.parametrize("what", ["text fifo", "text /dev/zero", "manifest fifo", "stats fifo"])
def test_fifos_and_devices_in_a_store(tmp_path, what):
    st = small_store(tmp_path / "st")
    name = {"text": "text.txt", "manifest": "manifest.json", "stats": "stats.json"}[what.split()[0]]
    (st.path / name).unlink()
    if what.endswith("fifo"):
        os.mkfifo(st.path / name)
    else:
        (st.path / name).symlink_to("/dev/zero")
    cmd = ("export", st.path, "--unit", "0:h:0", "--out", tmp_path / "x.html")
    r = run(*cmd, timeout=60)
    one_line(r, name)
    assert "FIFO" in r.stderr or "symbolic link" in r.stderr


@pytest.mark.parametrize("what", ["weights /dev/zero", "weights fifo", "config fifo", "config directory",
                                  "config symlink"])
def test_fifos_devices_and_directories_in_a_checkpoint(tmp_path, make_model, secret, what):
    ck = save_checkpoint(make_model(text=TEXT, hidden=4, layers=1), tmp_path / "ck")
    name = "model.safetensors" if what.startswith("weights") else "config.json"
    if what == "config symlink":  # a real config elsewhere: still not read through the link
        (tmp_path / "elsewhere.json").write_bytes((ck / name).read_bytes())
    (ck / name).unlink()
    if what.endswith("fifo"):
        os.mkfifo(ck / name)
    elif what.endswith("directory"):
        (ck / name).mkdir()
    elif what == "config symlink":
        (ck / name).symlink_to(tmp_path / "elsewhere.json")
    else:
        (ck / name).symlink_to("/dev/zero")
    one_line(run("sample", ck, "--length", 5, "--seed", 0, timeout=60), name)


# --- 3. sizes are checked against each other and the files before anything is allocated ---


def test_a_sparse_store_of_thirty_million_units_is_refused_at_open(tmp_path):
    st = small_store(tmp_path / "st", text="a")
    edit_manifest(st.path, hidden=30_000_000, kinds=["h"])
    with open(st.path / "L0.h.f16", "wb") as f:
        f.truncate(30_000_000 * 2)  # 60 MB that take no disk: the byte count agrees with the manifest
    (st.path / "L0.c.f16").unlink()
    with pytest.raises(RnnvizError, match=r"hidden must be an integer from 1 to 16,384, got 30000000"):
        open_store(st.path)


def test_unit_names_are_a_range_not_millions_of_strings(tmp_path):
    st = small_store(tmp_path / "st")
    T, H, layers, kinds = len(TEXT), 16384, list(range(32)), ["h", "c", "i", "f", "g", "o"]
    model = {**st.manifest["model"], "hidden": H, "layers": 32}
    edit_manifest(st.path, hidden=H, layers=layers, kinds=kinds, model=model)
    for f in st.path.glob("L*.f16"):
        f.unlink()
    for l in layers:
        for k in kinds:
            with open(st.path / f"L{l}.{k}.f16", "wb") as f:
                f.truncate(T * H * 2)  # sparse
    tracemalloc.start()
    st = open_store(st.path)
    units = st.units
    assert len(units) == 32 * 6 * H == 3_145_728
    assert units[0] == "0:h:0" and units[-1] == "31:o:16383" and units[H] == "0:c:0"
    assert "17:g:99" in units and units.index("17:g:99") == (17 * 6 + 4) * H + 99
    assert "17:g:16384" not in units and "017:g:1" not in units and "x" not in units and 5 not in units
    assert units[5:8] == ["0:h:5", "0:h:6", "0:h:7"]
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 5_000_000, peak  # a list of the names would take ~250 MB


def test_weights_larger_than_the_config_needs_are_refused_before_hashing(tmp_path, make_model):
    ck = save_checkpoint(make_model(text=TEXT, hidden=4, layers=1), tmp_path / "ck")
    with open(ck / "model.safetensors", "ab") as f:
        f.truncate(1 << 30)  # a sparse GB that would take seconds to hash
    one_line_error(cli("sample", ck, "--length", 5), "bytes, more than the model in config.json needs")


# --- 4 (stores) hostile manifests fail at open ---


@pytest.mark.parametrize("field,value,message", [
    ("checkpoint", "str", "checkpoint must be null or"),
    ("checkpoint", {"path": 5}, "checkpoint must be null or"),
    ("layers", [0, 0], "layers must be distinct integers"),
    ("layers", [0.5], "layers must be distinct integers"),
    ("length", 0, "length must be an integer from 1"),
    ("length", True, "length must be an integer from 1"),
    ("hidden", 0, "hidden must be an integer from 1"),
    ("hidden", 2.0, "hidden must be an integer from 1"),
    ("cell", ["lstm"], "cell must be one of rnn, gru, lstm"),
    ("topk", -1, "topk must be an integer from 0"),
    ("has_logprob", "yes", "has_logprob must be true or false"),
    ("hidden", 2, r"the manifest \(lstm, hidden 2, layers \[0\], 22 characters\) does not fit its model"),
    ("layers", [3], r"the manifest \(lstm, hidden 4, layers \[3\], 22 characters\) does not fit its model"),
])
def test_hostile_manifests_fail_at_open(tmp_path, field, value, message):
    st = small_store(tmp_path / "st")
    edit_manifest(st.path, **{field: value})
    with pytest.raises(RnnvizError, match=r"manifest.json: manifest field missing or malformed \(" + message):
        open_store(st.path)
    one_line_error(cli("find", st.path, "--top", 1), "manifest field missing or malformed")


def test_non_numeric_stats_are_a_clear_error(tmp_path):
    st = small_store(tmp_path / "st")
    d = json.loads((st.path / "stats.json").read_text())
    d["mean"][0] = "high"
    (st.path / "stats.json").write_text(json.dumps(d))
    with pytest.raises(RnnvizError, match=r"stats.json: missing or malformed"):
        open_store(st.path).stats  # noqa: B018
    with pytest.raises(RnnvizError, match=r"stats.json: missing or malformed"):
        dash_stores.StoreSet([st.path])  # the dashboard refuses it at start-up, not in a callback
    (st.path / "stats.json").write_text("[" * 200_000)
    with pytest.raises(RnnvizError, match=r"stats.json: not valid JSON \(nested too deeply\)"):
        open_store(st.path).stats  # noqa: B018


# --- 6. ordinary actions that ended in a traceback ---


def test_resume_at_or_past_its_goal_says_so(run_dir):
    src, run_ = run_dir
    for steps in (4, 2):
        one_line_error(cli("train", src, "--out", run_, "--resume", "--max-steps", steps),
                       f"is already at step 4, past step {steps}: nothing to train")


def test_a_train_state_with_a_foreign_rng_state_cannot_resume(run_dir):
    from safetensors.torch import load_file, save_file
    src, run_ = run_dir
    f = run_ / "last" / "train_state.safetensors"
    tensors = load_file(f)
    tensors["rng.cpu"] = tensors["rng.cpu"][:100].clone()
    save_file(tensors, f)
    one_line_error(cli("train", src, "--out", run_, "--resume", "--max-steps", 8), "cannot resume",
                   "rng.cpu is uint8 (100,)")


def _edit_json(path: Path, edit) -> None:
    d = json.loads(path.read_text())
    edit(d)
    path.write_text(json.dumps(d))


@pytest.mark.parametrize("key,value,message", [
    ("appended", {"log.jsonl": -5}, "appended is"), ("appended", {"../x": 0}, "appended is"),
    ("step", 2.5, "step is 2.5"), ("step", -1e6, "step is -1000000.0"), ("step", -3, "step is -3"),
    ("elapsed", float("nan"), "elapsed is nan"), ("val_loss", float("inf"), "val_loss is inf"),
    ("opt_scalars", [1, 2], "opt_scalars is [1, 2]"), ("opt_scalars", {"x": 1}, "opt_scalars is {'x': 1}"),
    ("param_groups", {"params": 1}, "param_groups is {'params': 1}"), ("param_groups", [3], "param_groups is [3]"),
])
def test_hand_edited_train_state(run_dir, key, value, message):
    src, run_ = run_dir
    _edit_json(run_ / "last" / "train_state.json", lambda d: d.update({key: value}))
    one_line_error(cli("train", src, "--out", run_, "--resume", "--max-steps", 8), "cannot resume", message)


@pytest.mark.parametrize("key,value,message", [
    ("batch", "8", "batch must be an integer, got '8'"), ("lr", float("nan"), "lr must be a finite number"),
    ("epochs", float("inf"), "epochs must be a finite number"),
    ("seq_len", 2**30, "seq-len must be >= 1 and <= 1048576"),
    ("eval_every", 2.5, "eval-every must be an integer"), ("weight_decay", -1, "weight-decay must be >= 0"),
    ("seed", 2**64, "seed must be >= 0 and <= 9223372036854775807"),
])
def test_hand_edited_training_settings(run_dir, key, value, message):
    src, run_ = run_dir
    _edit_json(run_ / "last" / "config.json", lambda d: d["train"].update({key: value}))
    one_line_error(cli("train", src, "--out", run_, "--resume"), message)  # a stop flag would replace epochs


@pytest.mark.parametrize("flags,message", [
    (["--lr", "nan"], "lr must be a finite number"), (["--lr", "inf"], "lr must be a finite number"),
    (["--epochs", "nan"], "epochs must be a finite number"), (["--epochs", "inf"], "epochs must be a finite"),
    (["--epochs", "0"], "epochs must be > 0"), (["--weight-decay", "nan"], "weight-decay must be a finite"),
    (["--clip", "-inf"], "clip must be a finite number"), (["--dropout", "nan"], "dropout must be a finite"),
    (["--time-budget", "nan"], "time-budget must be a finite"), (["--seed", str(2**64)], "seed must be >= 0"),
])
def test_train_flags_that_are_not_numbers(tmp_path, flags, message):
    src = tmp_path / "t.txt"
    src.write_text(TEXT * 50, encoding="utf-8")
    one_line_error(cli("train", src, "--out", tmp_path / "run", "--max-steps", 2, *flags), message)
    assert not (tmp_path / "run").exists()


def test_sample_at_a_vanishing_temperature_is_greedy(make_model):
    model = make_model(text=TEXT, hidden=8, layers=1)
    got = sample(model, 20, prime="He", temperature=1e-40, seed=0)
    ids = torch.as_tensor(model.vocab.encode("He"))[None]
    logits, state = model(ids)
    want = []
    for _ in range(20):  # argmax decoding, by hand
        nxt = int(logits[0, -1].argmax())
        want.append(nxt)
        logits, state = model(torch.tensor([[nxt]]), state)
    assert got == model.vocab.decode(want)


@pytest.mark.parametrize("flags,message", [
    (["--seed", str(2**64)], "seed must be an integer from 0 to 2**64-1"),
    (["--seed", "-1"], "seed must be an integer from 0 to 2**64-1"),
    (["--clamp", "0:h:0=nan"], "clamp value for 0:h:0 must be a finite number"),
    (["--clamp", "0:h:0=1e400"], "clamp value for 0:h:0 must be a finite number"),
    (["--temperature", "inf"], "temperature must be > 0 and finite"),
])
def test_sample_flags_out_of_range(tiny_ckpt, flags, message):
    one_line_error(cli("sample", tiny_ckpt, "--length", 5, *flags), message)


def test_sample_tiny_temperature_from_the_cli(tiny_ckpt):
    r = cli("sample", tiny_ckpt, "--length", 5, "--temperature", "1e-40", "--seed", 0)
    assert r.exit_code == 0 and "Traceback" not in r.output, r.output


def _config_edit(ck: Path, edit) -> None:
    _edit_json(ck / "config.json", edit)


@pytest.mark.parametrize("case,message", [
    ("dropout str", "dropout must be a number in [0, 1), got '0.5'"),
    ("dropout null", "dropout must be a number in [0, 1), got None"),
    ("dropout list", "dropout must be a number in [0, 1), got [0.1]"),
    ("no vocab_size", "model config has no vocab_size"),
    ("vocab int", "vocabulary entries must be single characters"),
    ("vocab null", "vocabulary entries must be single characters"),
    ("deep nesting", "config.json: not valid JSON (nested too deeply)"),
])
def test_hostile_config_values(tmp_path, make_model, case, message):
    ck = save_checkpoint(make_model(text=TEXT, hidden=4, layers=1), tmp_path / "ck")
    edits = {
        "dropout str": lambda d: d["model"].update(dropout="0.5"),
        "dropout null": lambda d: d["model"].update(dropout=None),
        "dropout list": lambda d: d["model"].update(dropout=[0.1]),
        "no vocab_size": lambda d: d["model"].pop("vocab_size"),
        "vocab int": lambda d: d["vocab"].__setitem__(0, 7),
        "vocab null": lambda d: d["vocab"].__setitem__(0, None),
    }
    if case == "deep nesting":
        (ck / "config.json").write_text('{"a": ' + "[" * 200_000)
    else:
        _config_edit(ck, edits[case])
    one_line_error(cli("sample", ck, "--length", 5), message)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nan_or_inf_weights_with_a_matching_hash_are_refused(tmp_path, make_model, bad):
    ck = save_checkpoint(make_model(text=TEXT, hidden=4, layers=1), tmp_path / "ck")
    from safetensors.torch import load_file

    tensors = load_file(str(ck / "model.safetensors"))
    tensors["head.bias"][0] = bad
    save_file(tensors, str(ck / "model.safetensors"))
    _config_edit(ck, lambda d: d.update(weights_sha256=sha256_file(ck / "model.safetensors")))
    src = tmp_path / "t.txt"
    src.write_text(TEXT, encoding="utf-8")
    one_line_error(cli("sample", ck, "--length", 5), "weights hold NaN or infinite values (head.bias)")
    one_line_error(cli("eval", ck, src), "weights hold NaN or infinite values")


@pytest.mark.parametrize("where", ["under a file", "in /proc"])
def test_out_where_nothing_can_be_written(tmp_path, tiny_ckpt, where):
    (tmp_path / "afile").write_text("x")
    out = tmp_path / "afile" / "run" if where == "under a file" else Path("/proc/rnnviz-test/run")
    src = tmp_path / "t.txt"
    src.write_text(TEXT * 50, encoding="utf-8")
    one_line_error(cli("train", src, "--out", out, "--max-steps", 2), after_progress=True)
    one_line_error(cli("record", tiny_ckpt, src, "--out", out, "--unknown", "skip"), after_progress=True)
    st = small_store(tmp_path / "st")
    one_line_error(cli("export", st.path, "--unit", "0:h:0", "--out", out / "x.html"))


def test_disk_full_while_training_is_one_line_and_keeps_last(tmp_path):
    rng = np.random.default_rng(0)
    src = tmp_path / "t.txt"
    src.write_text("".join(rng.choice(["the ", "cat ", "sat. ", '"hi" ', "mat\n"], size=2000)), encoding="utf-8")
    run_ = tmp_path / "run"
    common = ["--layers", 1, "--hidden", 32, "--batch", 2, "--seq-len", 16, "--eval-every", 4,
              "--device", "cpu"]
    r = run("train", src, "--out", run_, "--max-steps", 4, *common, timeout=120)
    assert r.returncode == 0, r.stderr
    before = {p.name: p.read_bytes() for p in (run_ / "last").iterdir()}
    weights = (run_ / "last" / "model.safetensors").stat().st_size
    # The checkpoint save hits the full disk (safetensors raises SafetensorError): old last/ intact.
    r = run("train", src, "--out", run_, "--resume", "--max-steps", 8, timeout=120, fsize=weights - 1000)
    one_line(r, "cannot write")
    assert {p.name: p.read_bytes() for p in (run_ / "last").iterdir()} == before
    assert not [p for p in run_.iterdir() if p.name.endswith(".tmp")]
    # The log append hits it (OSError EFBIG / ENOSPC).
    log_size = json.loads((run_ / "last" / "train_state.json").read_text())["appended"]["log.jsonl"]
    r = run("train", src, "--out", run_, "--resume", "--max-steps", 8, timeout=120, fsize=log_size + 10)
    one_line(r, "cannot write", "log.jsonl")
    assert {p.name: p.read_bytes() for p in (run_ / "last").iterdir()} == before


@pytest.mark.slow
def test_sigterm_to_train_saves_last_like_ctrl_c(tmp_path):
    src = tmp_path / "t.txt"
    src.write_text("the cat sat on the mat.\n" * 2000, encoding="utf-8")
    run_ = tmp_path / "run"
    with started("train", src, "--out", run_, "--layers", 1, "--hidden", 32, "--max-steps", 100000,
                 "--eval-every", 100000, "--device", "cpu") as proc:
        wait_for(lambda: (run_ / "log.jsonl").exists() and (run_ / "log.jsonl").stat().st_size > 0, proc=proc)
        seen = children(proc.pid)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Interrupted: the last completed step is saved" in err and "Traceback" not in err
    state = json.loads((run_ / "last" / "train_state.json").read_text())
    assert state["step"] >= 1
    assert not [p for p in run_.iterdir() if p.name.startswith(".")]
    assert not [p for p in seen if alive(p)]


@pytest.mark.slow
def test_sigterm_to_record_removes_its_temp_dir(tmp_path, tiny_ckpt):
    from conftest import TEXT as CKPT_TEXT  # the checkpoint's vocabulary

    src = tmp_path / "t.txt"
    src.write_text(CKPT_TEXT * 20000, encoding="utf-8")
    with started("record", tiny_ckpt, src, "--out", tmp_path / "st", "--exact", "--device", "cpu") as proc:
        wait_for(lambda: any(p.name.startswith(".st.") for p in tmp_path.iterdir()), proc=proc)
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err, err
    assert not (tmp_path / "st").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".st.")]


@pytest.mark.slow
def test_sigterm_to_serve_stops_it_and_frees_the_port(tmp_path):
    import socket

    st = small_store(tmp_path / "st")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for _attempt in range(2):  # the second start needs the port the first one held
        with started("serve", st.path, "--port", port) as proc:
            wait_for(lambda: _listening(port), proc=proc)
            seen = children(proc.pid)
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=30)
        assert proc.returncode == 130 and "Traceback" not in err, err
        assert not [p for p in seen if alive(p)]


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_math_is_finite_guard_for_huge_integers():
    # A seed past any float (2**2000) is refused by range, not an OverflowError from math.isfinite.
    with pytest.raises(RnnvizError, match="seed must be >= 0"):
        TrainConfig(seed=2**2000)
    assert math.isfinite(TrainConfig(lr=1e-3).lr)
