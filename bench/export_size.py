"""Size and Chromium render time of an HTML export: 100,000 characters x 3 units.

    .venv/bin/python bench/export_size.py                       # synthetic store over War and Peace
    .venv/bin/python bench/export_size.py --store st --units 1:c:17,1:h:3,1:f:9   # a real recording

The synthetic units have the statistics of real ones (a slow cell state c, a faster tanh h, a noisy
gate), so the runs of equal colour, and so the file size, are realistic; the gate is close to the
worst case (a new run at almost every character). The baseline, built in the same process and timed in
the same browser, is the common hand-written export: one ``<span style="background:rgb(..)"
title="value">`` per character. Render time = from navigation start to the first frame after the
load event (page parsed, styled, laid out and painted), median of ``--repeat`` loads in headless
Chromium (software rendering); ratios are ours / baseline.
"""

from __future__ import annotations

import argparse
import html
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import corpus_text, synthetic_store

from rnnviz.model.charrnn import parse_unit
from rnnviz.store.reader import open_store
from rnnviz.views.export import colour_scale, export_html

CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]


def ar1(rng, n: int, rho: float, scale: float) -> np.ndarray:
    """An AR(1) process x_t = rho x_{t-1} + noise, stationary std ``scale``."""
    e = rng.normal(0, scale * np.sqrt(1 - rho**2), n).tolist()
    x, acc = [], 0.0
    for v in e:
        acc = rho * acc + v
        x.append(acc)
    return np.array(x)


def make_store(path: Path, n: int):
    """One LSTM layer of 4 units over war_and_peace: AR(1) c and h (slow, like quote or line-length cells)
    and a noisy f gate (a new colour almost every character)."""
    text = corpus_text("war_and_peace.txt", n, "the quick brown fox jumps over the lazy dog.\n")
    rng = np.random.default_rng(0)
    H = 4
    cols = {
        "c": np.stack([ar1(rng, n, 0.995, 1.5) for _ in range(H)], 1),
        "h": np.tanh(np.stack([ar1(rng, n, 0.9, 0.8) for _ in range(H)], 1)),
        "f": 1 / (1 + np.exp(-rng.normal(1.0, 2.0, (n, H)))),
    }
    return open_store(synthetic_store(path, text, 1, H, list(cols),
                                      columns=lambda s, m: {(0, k): a[s : s + m].astype(np.float16)
                                                            for k, a in cols.items()}))


def baseline_html(store, units: list[str], start: int, stop: int) -> str:
    """One inline-styled span per character with the value in ``title``: the usual hand-written export."""
    text = store.text[start:stop]
    parts = ["<!DOCTYPE html><html><head><meta charset=utf-8></head><body>"]
    for name in units:
        layer, kind, index = parse_unit(name)
        scale = colour_scale(kind, store.stats.loc[name])
        vals = np.asarray(store.array(layer, kind)[start:stop, index], dtype=np.float32)
        cols = scale.colours(vals)
        parts.append(f"<h2>{name}</h2><pre style='white-space:pre-wrap'>")
        parts.extend(
            f'<span style="background:{c}" title="{v:.4g}">{html.escape(ch)}</span>'
            for ch, c, v in zip(text, cols, vals.tolist(), strict=True)
        )
        parts.append("</pre>")
    parts.append("</body></html>")
    return "".join(parts)


def render_ms(browser, path: Path, repeat: int) -> tuple[float, float]:
    """(median ms from navigation start to the first frame after load, ms of the first hover)."""
    times, hovers = [], []
    for _ in range(repeat):
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.goto(path.as_uri(), wait_until="load", timeout=120_000)
        times.append(page.evaluate(
            "new Promise(r => requestAnimationFrame(() => requestAnimationFrame(() => r(performance.now()))))"
        ))
        if page.locator("#rnnviz-tip").count():
            box = page.locator(".x").first.bounding_box()
            t0 = time.perf_counter()
            page.mouse.move(box["x"] + 40, box["y"] + 12)
            page.wait_for_selector("#rnnviz-tip:not([hidden])")
            hovers.append((time.perf_counter() - t0) * 1e3)
        page.close()
    return statistics.median(times), statistics.median(hovers) if hovers else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", help="a recorded store (default: a synthetic one over War and Peace)")
    ap.add_argument("--units", default=None, help="comma-separated units (default: 0:c:0,0:h:0,0:f:0)")
    ap.add_argument("--length", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--keep", help="also write our export to this path")
    a = ap.parse_args()

    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        store = open_store(a.store) if a.store else make_store(tmp / "store", a.length)
        units = a.units.split(",") if a.units else ["0:c:0", "0:h:0", "0:f:0"]
        t0 = time.perf_counter()
        ours = export_html(store, units, tmp / "ours.html", length=a.length)
        t_ours = time.perf_counter() - t0
        t0 = time.perf_counter()
        base = baseline_html(store, units, ours.start, ours.stop)
        t_base = time.perf_counter() - t0
        (tmp / "base.html").write_text(base, encoding="utf-8")
        if a.keep:
            ours.save(a.keep)
        n = ours.stop - ours.start
        size_ours = (tmp / "ours.html").stat().st_size
        size_base = (tmp / "base.html").stat().st_size
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            r_ours, hover = render_ms(browser, tmp / "ours.html", a.repeat)
            r_base, _ = render_ms(browser, tmp / "base.html", a.repeat)
            browser.close()
    runs = ours.html.count("<i")
    print(f"export: {n:,} chars x {len(units)} units ({', '.join(units)})")
    print(f"  ours     {size_ours / 1e6:6.2f} MB  {size_ours / (n * len(units)):5.1f} B/char  "
          f"{runs:,} runs  build {t_ours:.2f} s  render {r_ours:,.0f} ms  first hover {hover:,.0f} ms")
    print(f"  baseline {size_base / 1e6:6.2f} MB  {size_base / (n * len(units)):5.1f} B/char  "
          f"build {t_base:.2f} s  render {r_base:,.0f} ms")
    print(f"  ratio ours/baseline: size {size_ours / size_base:.2f}  render {r_ours / r_base:.2f}  "
          f"build {t_ours / t_base:.2f}")


if __name__ == "__main__":
    main()
