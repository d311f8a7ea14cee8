"""Per-unit statistics of a recording (``stats.json``): :class:`StreamStats`, kept per stream so that
they do not depend on who recorded what, and :class:`RunningStats`, the same for one stream read in order.

The recorder reads B contiguous streams side by side; under torchrun each process records a share of
them. Summing rows in the order they happen to arrive would make ``stats.json`` depend on that split
(float addition is not associative). Instead every stream has its own sums, folded in the same order
whatever the split; the processes' sums are combined exactly (each stream is non-zero on one rank only:
a sum with zeros, a min with +inf), and the streams are merged in stream order at the end (Chan et al.'s
pairwise update of the mean and the sum of squared deviations). So one process and N processes give
the same bits.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from rnnviz.model.distributed import Group
from rnnviz.store.manifest import STAT_COLUMNS  # noqa: F401 (re-exported for the writer)

SAT_LO, SAT_HI = 0.1, 0.9  # gate saturation thresholds of the paper (left / right saturated)
Ranges = Sequence[tuple[int, int]]  # unit ranges [a, b) of a layer's kind-major width

SUMMED = ("n", "shift", "s1", "s2", "lo", "hi")


class StreamStats:
    """mean, std, min, max, sat_lo, sat_hi of K kinds × H units, accumulated per stream.

    Blocks are (K, g, n, H) float16: n rows of g consecutive streams. Sums are of values shifted by
    each stream's first value (no cancellation in the variance); block sums float32, totals float64.
    sat_lo / sat_hi are counted only for the units in ``saturating`` (ranges of the kind-major K·H units:
    the sigmoid gates, see :func:`saturating_ranges`); elsewhere they mean nothing and are NaN.
    """

    CPU_ROWS = 1024  # rows per pass on a CPU, so that the float32 copy stays in cache

    def __init__(self, kinds: int, hidden: int, streams: int, device: torch.device | str = "cpu",
                 saturating: Ranges = ()):
        z = torch.zeros(streams, kinds, hidden, dtype=torch.float64, device=device)  # (B, K, H)
        self.acc = {"n": torch.zeros(streams, dtype=torch.float64, device=device), "shift": z,
                    "s1": z.clone(), "s2": z.clone(), "lo": z.clone(), "hi": z.clone(),
                    "min": z + float("inf"), "max": z - float("inf")}
        self.width = kinds * hidden
        self.boxes = _boxes(saturating, kinds, hidden)
        self.counted = torch.zeros(self.width, dtype=torch.bool)  # (K·H,): units whose saturation is counted
        for a, b in saturating:
            self.counted[a:b] = True

    def update(self, block: torch.Tensor, first: int, counts: list[int]) -> None:
        """Fold in ``block`` (K, g, n, H): streams ``first .. first+g-1``; stream ``first+j`` has
        ``counts[j]`` real rows (the rest is padding after the text's end)."""
        n = block.shape[2]
        full = sum(1 for c in counts if c == n)  # only trailing streams can be short
        step = block.shape[1] if block.device.type == "cuda" else max(1, self.CPU_ROWS // max(n, 1))
        for j in range(0, full, step):
            self._fold(block[:, j : min(j + step, full)], first + j)
        for j in range(full, len(counts)):
            if counts[j]:
                self._fold(block[:, j : j + 1, : counts[j]], first + j)

    def _fold(self, block: torch.Tensor, first: int) -> None:
        a, f64 = self.acc, torch.float64
        g, n = block.shape[1], block.shape[2]
        rows = slice(first, first + g)
        x = block.to(torch.float32, copy=True).transpose(0, 1)  # (g, K, n, H): stream-major like the sums
        fresh = a["n"][rows] == 0
        if fresh.any():  # a stream's first block: its first row becomes its shift
            a["shift"][rows][fresh] = x[fresh, :, 0].to(f64)
        if self.boxes:  # 0/1 flags as float32, ~5x faster to sum than bools; exact below 2**24 rows
            flags, exact = torch.empty_like(x), None if n < 1 << 24 else f64
            for k0, k1, u0, u1 in self.boxes:
                xs, fs = x[:, k0:k1, :, u0:u1], flags[:, k0:k1, :, u0:u1]
                a["lo"][rows, k0:k1, u0:u1] += torch.lt(xs, SAT_LO, out=fs).sum(2, dtype=exact).to(f64)
                a["hi"][rows, k0:k1, u0:u1] += torch.gt(xs, SAT_HI, out=fs).sum(2, dtype=exact).to(f64)
        a["min"][rows] = torch.minimum(a["min"][rows], x.amin(2).to(f64))
        a["max"][rows] = torch.maximum(a["max"][rows], x.amax(2).to(f64))
        x.sub_(a["shift"][rows, :, None].float())  # in place: x is our own copy
        a["s1"][rows] += x.sum(2).to(f64)
        a["s2"][rows] += x.mul_(x).sum(2).to(f64)
        a["n"][rows] += n

    def reduce(self, group: Group) -> None:
        """Combine the ranks' streams (each stream was folded on one rank only): exact, on every rank."""
        for k in SUMMED:
            group.all_reduce(self.acc[k])
        group.all_reduce(self.acc["min"], "min")
        group.all_reduce(self.acc["max"], "max")

    def columns(self) -> dict[str, list[float]]:
        """Each statistic as ``width`` floats, kind-major (the store's unit order within a layer)."""
        a = {k: v.cpu() for k, v in self.acc.items()}
        total = float(a["n"].sum())
        if total == 0:
            return {c: [float("nan")] * self.width for c in STAT_COLUMNS}
        mean = m2 = None
        seen = 0.0
        for b in range(len(a["n"])):  # stream order: the same whatever the split among processes
            nb = float(a["n"][b])
            if nb == 0:
                continue
            mb = a["shift"][b] + a["s1"][b] / nb
            m2b = (a["s2"][b] - a["s1"][b] ** 2 / nb).clamp(min=0)
            if mean is None:
                mean, m2 = mb, m2b
            else:
                delta = mb - mean
                mean = mean + delta * (nb / (seen + nb))
                m2 = m2 + m2b + delta**2 * (seen * nb / (seen + nb))
            seen += nb
        nan = torch.tensor(float("nan"), dtype=torch.float64)
        sat = {c: torch.where(self.counted, a[k].sum(0).flatten() / total, nan)
               for c, k in (("sat_lo", "lo"), ("sat_hi", "hi"))}
        cols = {"mean": mean, "std": (m2 / total).clamp(min=0).sqrt(), "min": a["min"].amin(0),
                "max": a["max"].amax(0), **sat}
        return {k: v.flatten().tolist() for k, v in cols.items()}


def saturating_ranges(kinds: Sequence[str], widths: Sequence[int], sigmoid: Sequence[str]) -> list[tuple[int, int]]:
    """The unit ranges [a, b) of a layer's kind-major units (``kinds`` of ``widths`` side by side) that hold
    the ``sigmoid`` kinds, adjacent ones merged: where a saturation count means something."""
    out, a = [], 0
    for k, w in zip(kinds, widths, strict=True):
        if k in sigmoid and out and out[-1][1] == a:
            out[-1] = (out[-1][0], a + w)
        elif k in sigmoid:
            out.append((a, a + w))
        a += w
    return out


def _boxes(ranges: Ranges, K: int, H: int) -> list[tuple[int, int, int, int]]:
    """Unit ranges of the K·H kind-major units -> (k0, k1, u0, u1) boxes of the (K, H) grid: whole kinds, or
    part of one kind."""
    boxes = []
    for a, b in ranges:
        if a % H == 0 and b % H == 0:
            boxes.append((a // H, b // H, 0, H))
        elif a // H == (b - 1) // H:
            k = a // H
            boxes.append((k, k + 1, a - k * H, b - k * H))
        else:
            raise ValueError(f"units {a}:{b} are not whole kinds of {H} units or a part of one")
    return boxes


class RunningStats(StreamStats):
    """The same statistics for one stream read in order: blocks (n, W) or (K, n, H) (K kinds side by
    side, as the recorder lays them out; units then numbered kind-major), on any device: the sums are
    created on the first block's device, so a GPU recording keeps them there with no host sync per block.
    """

    def __init__(self, width: int, saturating: Ranges = ()):
        self.width, self.acc = width, None  # StreamStats.__init__ runs on the first block (its device)
        self.saturating = list(saturating)

    def update(self, block: torch.Tensor) -> None:
        """block: (n, W) or (K, n, H) values as stored (float16), K·H = W."""
        block = block[None] if block.dim() == 2 else block
        K, n, H = block.shape
        if K * H != self.width:
            raise ValueError(f"block of {K}x{H} units, expected {self.width}")
        if n == 0:
            return
        if self.acc is None:
            super().__init__(K, H, 1, block.device, self.saturating)
        rows = n if block.device.type == "cuda" else self.CPU_ROWS
        for j in range(0, n, rows):
            super().update(block[:, None, j : j + rows], 0, [min(rows, n - j)])

    def columns(self) -> dict[str, list[float]]:
        if self.acc is None:
            return {c: [float("nan")] * self.width for c in STAT_COLUMNS}
        return super().columns()
