"""The README's walkthrough and Python block, run as written (only smaller, as the README's marker allows) in a
temporary directory: a README line that breaks fails CI."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"
README = (ROOT / "README.md").read_text(encoding="utf-8")
pytestmark = [pytest.mark.slow, pytest.mark.skipif(not (DATA / "war_and_peace.txt").exists(),
                                                   reason="the corpora in ../shared/data are not here")]


def _block_after(marker: str, fence: str = "```") -> str:
    """The first fenced block after ``marker`` in the README."""
    at = README.index(marker)
    start = README.index(fence, at)
    start = README.index("\n", start) + 1
    return README[start : README.index("```", start)]


def shrink(line: str) -> str:
    """What the README's marker allows: a shorter run and shorter windows, nothing else."""
    line = re.sub(r"--time-budget \d+", "--max-steps 30", line)
    line = line.replace("--max-steps 5000", "--max-steps 40")
    return re.sub(r"--length (\d+)", lambda m: f"--length {min(int(m.group(1)), 3000)}", line)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """A folder laid out as the README expects: ./sample_models, ../shared/data."""
    base = tmp_path_factory.mktemp("readme")
    (base / "shared").mkdir()
    (base / "shared" / "data").symlink_to(DATA)
    (base / "work").mkdir()
    (base / "work" / "sample_models").symlink_to(ROOT / "sample_models")
    return base / "work"


def _env() -> dict:
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "OMP_NUM_THREADS": "1"}


def _serve(line: str, cwd: Path) -> None:
    port = 8000 + os.getpid() % 1000
    p = subprocess.Popen(["bash", "-c", f"{line} --port {port}"], cwd=cwd, env=_env(), text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        for _ in range(600):
            try:
                page = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2).read().decode()
                break
            except OSError:
                assert p.poll() is None, p.communicate()[0]
                time.sleep(0.1)
        assert "<title>" in page
    finally:
        p.terminate()
        out = p.communicate(timeout=30)[0]
    assert out.startswith(f"Serving wp, ts on http://127.0.0.1:{port}/"), out


def test_the_walkthrough_runs_line_by_line(workdir):
    lines = [shrink(line) for line in _block_after("<!-- walkthrough:").splitlines() if line.strip()]
    assert len(lines) == 16
    for line in lines:
        if line.startswith("rnnviz serve"):
            _serve(line, workdir)
            continue
        r = subprocess.run(["bash", "-c", line], cwd=workdir, env=_env(), capture_output=True, text=True,
                           timeout=900)
        assert r.returncode == 0 and "Traceback" not in r.stderr, (line, r.stdout[-2000:], r.stderr[-2000:])
        assert r.stdout.strip() or ">" in line, (line, r.stderr[-2000:])  # every line says what it did
    assert (workdir / "catalog.csv").read_text().startswith("unit,")
    assert (workdir / "line_cells.html").read_text().lower().startswith("<!doctype html>")


def test_the_python_block_runs(workdir, monkeypatch):
    import rnnviz

    served = []
    monkeypatch.setattr(rnnviz, "serve", lambda store, **kw: served.append((store, kw)))
    monkeypatch.chdir(workdir)
    scope: dict = {}
    exec(compile(_block_after("## Python"), "README.md", "exec"), scope)
    assert scope["cells"]["unit"].tolist() and (workdir / "quote_cell.html").exists()
    assert served and served[0][1] == {"jupyter_mode": "inline"}
