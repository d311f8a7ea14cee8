"""Every benchmark in bench/ still runs: each script as a user runs it (``python bench/NAME.py``), at the
smallest sizes its options allow, exits 0 and prints the figures and the ratio it exists for.

A benchmark is not imported by anything else, so nothing else notices when the library moves under it
(bench/explain_speed.py raised a TypeError for weeks). Timings are not checked (a tiny run on a busy
machine): each label and that a number follows it are; so are the results that are not timings (the
load bench's errors, the planted quote cell found by similar_quality).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from conftest import CHROMIUM

from rnnviz.analysis.statistics import wilson_interval

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 240  # seconds per benchmark: a hang fails the test instead of blocking CI
NUM = r"-?\d[\d,]*(?:\.\d+)?"  # a printed figure: 12, 1,536, 0.829, -0.5


def fig(label: str, after: str = "") -> str:
    """A regex: ``label``, a figure, then ``after`` (a unit): the label alone, without its number, fails."""
    return re.escape(label) + r"\s*" + NUM + re.escape(after)


@dataclass(frozen=True)
class Bench:
    args: tuple[str, ...]  # "{store}" is replaced by the path of a small recorded store (similar_quality)
    expect: tuple[str, ...]  # regexes, each found somewhere in stdout: the absolute figures and the ratios
    browser: bool = False  # drives the system Chromium


BENCHES = {
    "train_throughput": Bench(
        ("--device", "cpu", "--amp", "off", "--layers", "1", "--hidden", "8", "--batch", "2", "--seq-len", "8",
         "--steps", "2", "--warmup", "1", "--log-every", "1", "--rounds", "1"),
        (fig("bare nn.LSTM step :", "k chars/s"), fig("rnnviz trainer    :", "k chars/s"),
         fig("ratio ours/bare   :") + "$"),
    ),
    "record_throughput": Bench(
        ("--device", "cpu", "--layers", "1", "--hidden", "8", "--chars", "2000", "--naive-chars", "20",
         "--fused-chars", "200", "--streams", "2", "--burn-in", "10", "--disk-mb", "8", "--settle", "1"),
        (fig("matmul fp32:", " GFLOP/s"), fig("disk sequential write:", " MB/s"),
         fig("naive cell loop:", " chars/s"), fig("fused, one stream:", " chars/s"),
         fig("ours -> host memory:", " chars/s"), fig("ours -> store on disk:", " chars/s"),
         fig("ours (disk) / naive cell loop:", "x"), fig("ours (disk) / fused one stream:", "x"),
         fig("FLOP rate (host memory) / matmul:", "%"), fig("FLOP rate (disk) / matmul:", "%"),
         fig("store write bandwidth / disk:", "%"), fig("kinds h     -> host memory:", " chars/s"),
         fig("kinds h,c   -> host memory:", " chars/s"),
         fig("kinds all   -> host memory:", " chars/s") + r"\s+" + fig("FLOP rate / matmul (1 thread):", "%"),
         fig("kernel passes") + ": " + fig("ceiling", "%"), fig("the fused kernel alone, one pass:", " chars/s"),
         fig("with one competing busy process (started", " s before):") + r"\s+"
         + fig("one torch thread: matmul fp32")),
    ),
    "thread_policy": Bench(
        ("--layers", "1", "--hidden", "8", "--chars", "600", "--burn-in", "20", "--eval-streams", "2", "--batch", "2",
         "--steps", "1", "--settle", "0"),
        (fig("as the machine is: load average"), fig("with one competing busy process: load average"),
         fig("record h,c (", " streams)") + r"\s+" + fig("1 thread", " s"),
         re.escape("train steps (batch 2)") + r"\s+" + fig("1 thread", " s"),
         fig("default / policy", "x") + "$"),
    ),
    "record_module": Bench(
        ("--device", "cpu", "--tokens", "200", "--vocab", "50", "--hidden", "8", "--threads", "1"),
        (fig("ours, rnnviz.record(module):", " tokens/s"), fig("CharRNN path, same shapes:", " tokens/s"),
         fig("the module's own forward alone:", " tokens/s"), fig("ratio ours / CharRNN path (time):", "x"),
         fig("ratio ours / module's forward (time):", "x") + "$",
         fig("the same in CPU time:", "x") + ", " + fig("", "x") + "$"),
    ),
    "record_exactness": Bench(
        ("--model", "sample_models/shakespeare-lstm-2x128", "--corpus", "tiny_shakespeare.txt", "--length", "3000",
         "--kinds", "h,c", "--streams", "4", "--burn-in", "100"),
        (fig("uncorrected:", " chars/s") + ".* units over tolerance; " + fig("reported start error"),
         fig("corrected:", " chars/s") + r".* 0 of 512 units over tolerance; " + fig("reported start error"),
         fig("exact:", " chars/s"), fig("time ratio corrected / uncorrected:", "x") + "$",
         fig("time ratio corrected / exact:", "x") + "$"),
    ),
    "modern_speed": Bench(  # the comparison's real sizes, one tiny training step and 300 characters each
        ("--steps", "1", "--chars", "300", "--repeat", "1", "--batch", "2", "--seq-len", "8"),
        tuple(rf"^{cell}\s+" + r"\s+".join([NUM] * 6) + "$" for cell in ("lstm", "mingru", "mamba", "slstm"))
        + (r"load average " + NUM,),
    ),
    "ablate_draws": Bench(  # --ckpt none: a random 2 x 8 LSTM
        ("--ckpt", "none", "--hidden", "8", "--chars", "1500", "--draws", "3"),
        (fig("one by one   :", " s"), fig("side by side :", " s"),
         fig("ratio ours/one by one :") + r" \(CPU time: " + fig("") + "; load average " + fig("") + r"\)$",
         fig("max |difference| of the draws' loss change:")),
    ),
    "find_speed": Bench(  # 3 layers x 12: the smallest store that holds the four planted cells (2:c:5, 1:c:11)
        ("--chars", "5000", "--layers", "3", "--hidden", "12"),
        (fig("read pass (iter_blocks only):", " s"), fig("rank_features, all units x features:", " s"),
         fig("block-bootstrap intervals of the reported units:", " s"),
         fig("naive per-unit sort (extrapolated):", " s"), fig("ratio ours / naive =") + "$"),
    ),
    "explain_speed": Bench(
        ("--chars", "2000", "--units", "12", "--repeat", "1"),
        (r"^\s+2,000\s+12" + rf"\s+{NUM}" * 4 + "$",  # chars, units; read, rules, explain s, us/unit/kchar
         r"naive \(np\.corrcoef per unit and rule, " + NUM + " rules\\): " + NUM + " s/unit",
         fig("ratio ours/naive =") + "$"),
    ),
    "export_size": Bench(
        ("--length", "2000", "--repeat", "1"),
        (r"  ours\s+" + NUM + r" MB\s+" + NUM + " B/char .* render " + NUM + " ms",
         r"  baseline\s+" + NUM + r" MB\s+" + NUM + " B/char .* render " + NUM + " ms",
         "ratio ours/baseline: " + fig("size") + " " + fig(" render") + " " + fig(" build") + "$"),
        browser=True,
    ),
    "emergence_speed": Bench(
        ("--snapshots", "1", "--chars", "2000", "--layers", "1", "--hidden", "8", "--baseline-snapshots", "1"),
        (fig("ours:", " s in all"), fig("floor:", " TFLOP"), fig("ours / floor ="),
         fig("baseline (record defaults + find, per snapshot):", " s"), fig("ours / baseline =")),
    ),
    # One process only: the bench's own code is the same for any count, each process count costs two torchrun
    # start-ups (~15 s here), and 2-process training and recording are tested in test_distributed.py.
    "distributed_throughput": Bench(
        ("--nproc", "1", "--device", "cpu", "--layers", "1", "--hidden", "8", "--batch", "2", "--seq-len", "8",
         "--steps", "30", "--record-chars", "2000", "--streams", "2"),  # 30 steps: 3 logged, the median of the middle
        (fig("train  1 process(es):", "k chars/s") + r"\s+" + fig("scaling efficiency"),
         fig("record 1 process(es):", "k chars/s") + r"\s+" + fig("scaling efficiency")),
    ),
    "dashboard_latency": Bench(
        ("--length", "5000", "--windows", "1", "--layers", "1", "--hidden", "8"),
        (fig("first load (server):", " ms"),
         r"window change over HTTP \(1 random windows; text \+ trace callbacks\): " + fig("median", " ms"),
         fig("ratio ours / baseline (medians, warm cache):") + "$",
         fig("ratio ours / baseline (medians, cold cache):") + "$",
         r"select-to-find over all 5,000 rows .*: " + fig("median", " ms"),
         r"pattern view, 8 cells over a 2,000-char window: " + fig("median", " ms")),
    ),
    "overview_speed": Bench(
        ("--length", "3000", "--hidden", "8"),
        (r"store: 3,000 rows, 32 units; 1:c: 8 rows; " + fig("load"),
         fig("first (two-state splits, measures, colour ranges, rows, figure):", " s") + "$",
         r"again, 500 characters: " + fig("", " ms") + ", figure " + fig("", " kB JSON") + "; baseline "
         + fig("", " ms") + ", " + fig("", " kB") + ": ratios " + fig("", " (time)") + ", " + fig("", " (size)") + "$",
         r"again, 2,000 characters: " + fig("", " ms")),
    ),
    "dashboard_first_use": Bench(
        ("--length", "3000", "--layers", "1", "--hidden", "8"),
        (fig("load average"), r"store: 3,000 chars x 48 units \(lstm 1x8, kinds h,c,i,f,g,o\)$",
         r"^cold \(no cache beside the store\): .*" + fig("first select-to-find", " s") + ".*"
         + fig("first catalog", " s") + r" \(48 rows; " + fig("", " progress messages shown") + r"\)$",
         r"^warm \(caches beside the store\): .*" + fig("first select-to-find", " s") + ".*"
         + fig("first catalog", " s") + r" \(48 rows; 0 progress messages shown\)$",
         "ratio warm / cold: " + fig("select-to-find", "x") + ", " + fig("catalog", "x") + "$",
         fig("load average after:")),
    ),
    "dashboard_load": Bench(  # one worker: each gunicorn worker is one more start-up (imports, stores)
        ("--length", "5000", "--hidden", "8", "--clients", "2", "--seconds", "2", "--baseline-seconds", "1",
         "--workers", "1"),
        (r"1 client \(baseline\): " + fig("", " requests") + ".*; errors 0$",
         r"2 clients: " + fig("", " requests") + ".*; errors 0$",
         fig("all requests      p50", " ms"),
         "ratio 2 clients / 1 client: " + fig("p50 latency", "x") + ", " + fig("throughput", "x")
         + "; server up throughout: True$"),
    ),
    "lstmvis_import_rss": Bench(("--tokens", "3000", "--width", "8"),
                                (r"import-lstmvis: peak RSS [\d,]+ MiB in [\d.]+ s",
                                 r"ratio \(peak - floor\) / one dataset read whole: [\d.]+$")),
    "memory_bound": Bench(("--chars", "3000", "--hidden", "4", "--short-chars", "1000", "--memory", "2GB,1GB"),
                          (fig("interpreter alone (python, torch, pandas, rnnviz):", " GB peak RSS"),
                           *(rf"^{c}\s+{re.escape(run)}(\s+{NUM}){{4}}\s+{lim}(\s+{NUM}){{2}}$"
                             for c in ("explain", "find")
                             for run, lim in (("before (unlimited)", r"2\.0"), ("after (--memory 2GB)", r"2\.0"),
                                              ("after (--memory 1GB)", r"1\.0"))),
                           fig("load average after:") + "$")),
    "startup": Bench(("--chars", "2000", "--hidden", "4"),  # the heavy imports are exact: what each command uses
                     (fig("load average") + "; store 2,000 chars x 16 units",
                      *(rf"^{re.escape(c)}\s+{NUM}\s+{NUM}\s+{NUM}%\s+{re.escape(h)}\s*$"
                        for c, h in (("--help", "-"), ("features", "-"), ("find", "torch,pandas"),
                                     ("similar", "pandas"), ("explain --control none", "torch,pandas"),
                                     ("export", "pandas"))),
                      fig("load average after:") + "$")),
    "similar_quality": Bench(("{store}:in_quote:1:c:2", "--n", "3"), ()),  # prints JSON: checked below
}


def quote_store(path: Path) -> Path:
    """A 2 x 4 LSTM store (h, c) of seeded noise in [-0.3, 0.3] over text with quotes, with a perfect quote
    cell planted at 1:c:2 (+1 inside a quote, -1 elsewhere) and a weaker one that goes *down* over quotes at
    0:c:1 (noise - 0.4 inside, noise + 0.4 elsewhere)."""
    from rnnviz.analysis.features import compute_feature
    from rnnviz.model.charrnn import ModelConfig
    from rnnviz.model.vocab import Vocab
    from rnnviz.store.writer import write_store

    block = 'He said "hello there, my dear friend" and left.\nShe asked "why?" twice.\nNothing here at all!\n'
    text = block * 20
    rng = np.random.default_rng(0)
    arrays = {(layer, kind): rng.uniform(-0.3, 0.3, (len(text), 4)).astype(np.float32)
              for layer in (0, 1) for kind in "hc"}
    arrays[(1, "c")][:, 2] = 2 * compute_feature("in_quote", text) - 1
    arrays[(0, "c")][:, 1] += 0.4 - 0.8 * compute_feature("in_quote", text)
    vocab = Vocab.from_text(text)
    write_store(path, text, arrays, ModelConfig(vocab_size=len(vocab), cell="lstm", layers=2, hidden=4), vocab)
    return path


def run_bench(name: str, args: list[str]) -> subprocess.CompletedProcess:
    """``python bench/NAME.py ARGS`` from the repository root, on one thread per process. This checkout's
    rnnviz comes first on the path: a script's own folder (bench/) is sys.path[0], so it would otherwise
    import whichever rnnviz the environment installed (another checkout's, in a shared venv). On a timeout
    its process group gets Ctrl-C first, so that the bench stops what it started (torchrun, gunicorn)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.Popen([sys.executable, f"bench/{name}.py", *args], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
        pytest.fail(f"bench/{name}.py did not finish in {TIMEOUT} s")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_every_bench_is_listed():
    assert sorted(BENCHES) == sorted(p.stem for p in (ROOT / "bench").glob("[!_]*.py"))


@pytest.mark.parametrize("name", list(BENCHES))
def test_bench_runs_and_prints_its_figures(name, tmp_path):
    bench = BENCHES[name]
    if bench.browser:
        pytest.importorskip("playwright.sync_api")
        if not Path(CHROMIUM).exists():
            pytest.skip(f"no system Chromium at {CHROMIUM}")
    store = quote_store(tmp_path / "store") if name == "similar_quality" else None
    proc = run_bench(name, [a.replace("{store}", str(store)) for a in bench.args])
    assert proc.returncode == 0, f"bench/{name}.py exited {proc.returncode}:\n{proc.stderr[-3000:]}"
    missing = [p for p in bench.expect if not re.search(p, proc.stdout, re.M)]
    assert not missing, f"bench/{name}.py printed no line matching {missing}:\n{proc.stdout}"
    if name == "similar_quality":
        got = json.loads(proc.stdout)
        # a feature cell is a unit and a direction: "-" marks the one that goes down over quotes
        assert (got["feature"], got["cell"]) == ("in_quote", "1:c:2")
        assert got["feature_cells_auroc_0.9"] == ["-0:c:1", "1:c:2"]
        tolerant, strict = got["tolerant"], got["strict"]
        # the planted cell is off on the closing quote, which the selection includes: ours forgives that edge
        # and finds it first every time, LSTMVis's every-character rule finds no cell
        assert (tolerant["selections"], tolerant["with_cells"], tolerant["top1_card_cell"]) == (3, 3, 3), tolerant
        assert (strict["selections"], strict["with_cells"]) == (3, 0), strict
        # the planted cell is two-valued: it passes, and as a two-state cell, in every selection; strictly, never
        assert (tolerant["feature_cell_passes"], tolerant["feature_cell_two_state"], tolerant["top1_when_two_state"]
                ) == (3, 3, 3), tolerant
        assert (strict["feature_cell_passes"], strict["feature_cell_two_state"], strict["top1_when_two_state"]
                ) == (0, 0, 0), strict
        assert (tolerant["strong_inside"], tolerant["all_inside"]) == (1.0, 1.0), tolerant
        # every match, not only the top 20: the planted cells are on over exactly the quotes, so each of the 3
        # selections finds the other 39 and nothing else; 3 selections are too few for a bootstrap interval
        q = tolerant["quality"]["all"]
        assert (q["matches"], q["hits"], q["feature_spans"], q["found"]) == (3 * 39, 3 * 39, 3 * 39, 3 * 39), q
        assert (q["precision"], q["recall"], q["span_recall"], q["precision_lo"]) == (1.0, 1.0, 1.0, None), q
        assert [s["all"]["precision"] for s in tolerant["per_selection"]] == [1.0, 1.0, 1.0]
        assert tolerant["intervals"]["top1_card_cell"] == [round(v, 4) for v in wilson_interval(3, 3)]
        assert strict["quality"]["all"]["matches"] == 0 and strict["quality"]["all"]["recall"] == 0.0
