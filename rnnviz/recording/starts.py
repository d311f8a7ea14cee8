"""Start states of the recorder's parallel streams, corrected until they agree with one sequential pass.

The recorder cuts a text into B streams of C characters and records them side by side. Stream b must
start from the state that one sequential pass has after reading ``text[b·C - 1]``. A burn-in guess
(reading the ``burn_in`` characters before the chunk from a zero state) is right for cells that forget
within the burn-in and wrong for the cells that count or remember far back, which are the ones worth
finding. So the guess is corrected, and the error that is left is measured, never assumed.

Correction: Newton's method on the chain of boundary states with a diagonal Jacobian (parareal and
DEER, Lim et al. 2023, solve the same fixed point). One *pass* runs every stream through its chunk from
its start X_b (states only: the fused kernel, no gates, no writes), giving its end state Y_b = F_b(X_b).
The starts are exact when every boundary agrees, Y_{b-1} = X_b. A sweep over the streams then gives
new starts, X'_0 = 0 and X'_{b+1} = Y_b + D_b·(X'_b - X_b), where D_b is the diagonal of dF_b/dX_b
through each unit's own recurrence (an LSTM's c keeps Π f_t of its start, a GRU's h Π z_t), computed in
the same pass (:class:`.recurrence.Carry`). A contractive cell forgets its start within a chunk (D ≈ 0)
and is right after one pass; a counting cell carries its start through (D ≈ 1), and the sweep carries
its count along the whole chain. Whatever D is, after k passes the first k boundaries are exact, so the
method ends.

The error of the starts follows from the same quantities: stream b misses its predecessor's end by
r_b = Y_{b-1} - X_b and carries on its predecessor's error, so its own is e_b = r_b + D_{b-1}·e_{b-1},
exactly the correction a sweep makes. A pass is checked when every |e_b| is within the tolerance.

Tolerance: |e_b| <= abs + rel·|state| for every unit and stream:
``abs`` for h (|h| <= 1), and ``rel`` for c, which can grow without bound (2e-3 is 2 to 4 float16
steps). The recording gives every stream's end state and carry again, so the error that is reported is
measured on the recording itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch

from rnnviz.recording import MAX_PASSES  # noqa: F401 (also the recorder's)


@dataclass(frozen=True)
class Tolerance:
    """A boundary state is settled when |error| <= abs + rel·|value|."""

    abs: float = 1e-3  # h and small c, in the state's own units
    rel: float = 2e-3  # of |value|: c can grow without bound (2 to 4 float16 steps)


@dataclass(frozen=True)
class StartError:
    """The largest error of the streams' start states against one sequential pass, over every stream.

    ``unit`` (``LAYER:KIND:INDEX``) is where ``error / (abs + rel·|value|)`` is largest: ``error`` is its
    absolute error, ``value`` the state there after correction, ``stream`` the stream that starts wrong.
    ``largest``: the largest absolute error, at ``largest_unit`` (a large c can be off by more and still
    be within its tolerance). ``units_over``: units with any stream over the tolerance, of ``units``."""

    unit: str
    error: float
    value: float
    stream: int
    scaled: float  # error / (abs + rel·|value|): <= 1 within the tolerance
    largest: float
    largest_unit: str
    units_over: int
    units: int

    @property
    def within(self) -> bool:
        return self.units_over == 0

    def to_dict(self) -> dict:
        return {**asdict(self), "within": self.within}


def start_error(X: torch.Tensor, Y: torch.Tensor, D: torch.Tensor, kinds: tuple[str, ...],
                tol: Tolerance) -> StartError | None:
    """The error of the starts X (K, L, B, H) given the ends Y they led to and the carry D (K, K, L, B, H):
    stream b misses its predecessor's end by r_b = Y_{b-1} - X_b, and carries its predecessor's error on,
    so its error is e_b = r_b + D_{b-1}·e_{b-1}: the correction the sweep would make. D = 0 gives each
    boundary's own disagreement. K: the state's kinds (``("h", "c")`` for an LSTM). None for one stream."""
    if X.shape[2] < 2:
        return None
    return _error(X, sweep(X, Y, D), kinds, tol)


def _where(t: torch.Tensor) -> tuple[int, ...]:
    """The index of ``t``'s largest element, one int per dimension (torch.unravel_index needs torch 2.2)."""
    flat, out = int(t.argmax()), []
    for size in reversed(t.shape):
        flat, r = divmod(flat, size)
        out.append(r)
    return tuple(reversed(out))


def _error(X: torch.Tensor, N: torch.Tensor, kinds: tuple[str, ...], tol: Tolerance) -> StartError:
    """How far the starts X are from the corrected starts N, both (K, L, B, H)."""
    K, L, B, H = X.shape
    err = (N - X)[:, :, 1:].abs()  # (K, L, B-1, H): stream 0 starts at the text's start, exactly
    scaled = err / (tol.abs + tol.rel * N[:, :, 1:].abs())
    k, l, b, i = _where(scaled)
    k2, l2, b2, i2 = _where(err)
    over = int((scaled > 1).any(2).sum())
    return StartError(unit=f"{l}:{kinds[k]}:{i}", error=float(err[k, l, b, i]), value=float(N[k, l, b + 1, i]),
                      stream=b + 1, scaled=float(scaled[k, l, b, i]), largest=float(err[k2, l2, b2, i2]),
                      largest_unit=f"{l2}:{kinds[k2]}:{i2}", units_over=over, units=K * L * H)


def sweep(X: torch.Tensor, Y: torch.Tensor, D: torch.Tensor) -> torch.Tensor:
    """New starts (K, L, B, H): X'_0 = X_0 (stream 0 starts at the text's start: exact) and
    X'_{b+1} = Y_b + D_b·(X'_b - X_b), one stream after another. D (K, K, L, B, H): per unit, how much of
    each kind of its start each kind of its end carries (the diagonal blocks of dF_b/dX_b)."""
    N = X.clone()
    for b in range(X.shape[2] - 1):
        delta = N[:, :, b] - X[:, :, b]  # (K, L, H)
        N[:, :, b + 1] = Y[:, :, b] + (D[:, :, :, b] * delta[None]).sum(1)
    return N


@dataclass
class Settled:
    """What :func:`settle` did: the starts it found, the passes it ran and the burn-in guess's error."""

    starts: torch.Tensor  # (K, L, B, H)
    passes: int
    guess_error: StartError | None  # of the starts before any correction (None: no pass was run)
    error: StartError | None = None  # of the starts returned, when the last pass checked them


def settle(
    X: torch.Tensor,
    run: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
    kinds: tuple[str, ...],
    tol: Tolerance = Tolerance(),
    max_passes: int = MAX_PASSES,
) -> Settled:
    """Correct the starts X (K, L, B, H) of B streams until every boundary is within ``tol``.

    ``run(X)`` gives the end states Y (K, L, B, H) of the streams started at X and the diagonal blocks D
    (K, K, L, B, H) of dY/dX (a process under torchrun runs its own share and gathers the rest: every
    process then takes the same decisions). At most ``max_passes`` passes; the starts of the last sweep are
    returned whether or not a pass checked them.
    """
    if X.shape[2] < 2:
        return Settled(X, 0, None)
    passes, guess = 0, None
    while passes < max_passes:
        Y, D = run(X)
        passes += 1
        N = sweep(X, Y, D)
        err = _error(X, N, kinds, tol)
        guess = guess or err
        if err.within:
            return Settled(X, passes, guess, err)
        X = N
    return Settled(X, passes, guess)
