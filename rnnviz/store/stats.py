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

import torch

from rnnviz.model.distributed import Group

STAT_COLUMNS = ("mean", "std", "min", "max", "sat_lo", "sat_hi")
SAT_LO, SAT_HI = 0.1, 0.9  # gate saturation thresholds of the paper (left / right saturated)

SUMMED = ("n", "shift", "s1", "s2", "lo", "hi")


class StreamStats:
    """mean, std, min, max, sat_lo, sat_hi of K kinds × H units, accumulated per stream.

    Blocks are (K, g, n, H) float16: n rows of g consecutive streams. Sums are of values shifted by
    each stream's first value (no cancellation in the variance); block sums float32, totals float64.
    """

    CPU_ROWS = 1024  # rows per pass on a CPU, so that the float32 copy stays in cache

    def __init__(self, kinds: int, hidden: int, streams: int, device: torch.device | str = "cpu"):
        z = torch.zeros(streams, kinds, hidden, dtype=torch.float64, device=device)  # (B, K, H)
        self.acc = {"n": torch.zeros(streams, dtype=torch.float64, device=device), "shift": z,
                    "s1": z.clone(), "s2": z.clone(), "lo": z.clone(), "hi": z.clone(),
                    "min": z + float("inf"), "max": z - float("inf")}
        self.width = kinds * hidden

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
        x = block.float().transpose(0, 1)  # (g, K, n, H): stream-major like the accumulators
        fresh = a["n"][rows] == 0
        if fresh.any():  # a stream's first block: its first row becomes its shift
            a["shift"][rows][fresh] = x[fresh, :, 0].to(f64)
        a["lo"][rows] += (x < SAT_LO).sum(2, dtype=f64)
        a["hi"][rows] += (x > SAT_HI).sum(2, dtype=f64)
        a["min"][rows] = torch.minimum(a["min"][rows], x.amin(2).to(f64))
        a["max"][rows] = torch.maximum(a["max"][rows], x.amax(2).to(f64))
        x = x - a["shift"][rows, :, None].float()
        a["s1"][rows] += x.sum(2).to(f64)
        a["s2"][rows] += (x * x).sum(2).to(f64)
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
        cols = {"mean": mean, "std": (m2 / total).clamp(min=0).sqrt(), "min": a["min"].amin(0),
                "max": a["max"].amax(0), "sat_lo": a["lo"].sum(0) / total, "sat_hi": a["hi"].sum(0) / total}
        return {k: v.flatten().tolist() for k, v in cols.items()}


class RunningStats(StreamStats):
    """The same statistics for one stream read in order: blocks (n, W) or (K, n, H) (K kinds side by
    side, as the recorder lays them out; units then numbered kind-major), on any device: the sums are
    created on the first block's device, so a GPU recording keeps them there with no host sync per block.
    """

    def __init__(self, width: int):
        self.width, self.acc = width, None  # StreamStats.__init__ runs on the first block (its device)

    def update(self, block: torch.Tensor) -> None:
        """block: (n, W) or (K, n, H) values as stored (float16), K·H = W."""
        block = block[None] if block.dim() == 2 else block
        K, n, H = block.shape
        if K * H != self.width:
            raise ValueError(f"block of {K}x{H} units, expected {self.width}")
        if n == 0:
            return
        if self.acc is None:
            super().__init__(K, H, 1, block.device)
        rows = n if block.device.type == "cuda" else self.CPU_ROWS
        for j in range(0, n, rows):
            super().update(block[:, None, j : j + rows], 0, [min(rows, n - j)])

    def columns(self) -> dict[str, list[float]]:
        if self.acc is None:
            return {c: [float("nan")] * self.width for c in STAT_COLUMNS}
        return super().columns()
