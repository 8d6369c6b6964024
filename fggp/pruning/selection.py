"""Which k active weights a pruning step removes.

Every order reduces to "the k smallest of some score among some entries, ties to the lower flat index",
done with ``torch.kthvalue`` plus elementwise passes: a full sort of ResNet-50's 23.5 M weights costs
about six times as much (REFERENCE.md, "Numbers worth knowing").
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from fractions import Fraction

import torch

from .validate import in_range, one_of

ORDERS = ("magnitude", "gradient", "gradient_first", "magnitude_first", "taylor", "random")


def k_smallest(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Bool mask of the k smallest entries of a 1-D tensor; ties go to the lower index.

    Counting with ``count_nonzero`` and indexing the ties avoids cumsum over a bool tensor, which first
    copies it to int64 (188 MB at ResNet-50's size).
    """
    n = scores.numel()
    if k <= 0:
        return torch.zeros(n, dtype=torch.bool, device=scores.device)
    if k >= n:
        return torch.ones(n, dtype=torch.bool, device=scores.device)
    with _values_only():
        kth = torch.kthvalue(scores, k).values
    below = scores < kth
    room = k - int(torch.count_nonzero(below))
    below[(scores == kth).nonzero().squeeze(1)[:room]] = True
    return below


@contextmanager
def _values_only():
    """Let ``torch.kthvalue`` run under ``torch.use_deterministic_algorithms(True)``.

    On CUDA that mode refuses kthvalue because *which index* it returns among equal values may vary; only
    the value is used here, and the value is the same whatever the index, so the selection stays exact.
    """
    if not torch.are_deterministic_algorithms_enabled():
        yield
        return
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(False)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(True, warn_only=warn_only)


def pool_size(k: int, n_active: int, rate: float) -> int:
    """Candidate pool of a two-step order: min(n_active, ceil(k / rate)).

    The division is done on the decimal the user wrote (0.3, not 0.299999...), so ceil(3 / 0.3) is 10.
    """
    return min(n_active, math.ceil(Fraction(k) / Fraction(repr(float(rate)))))


def _among(indices: torch.Tensor | None, scores: torch.Tensor, k: int) -> torch.Tensor:
    """The entries of ``indices`` (ascending; None stands for all of them) whose ``scores`` are the k smallest."""
    pick = k_smallest(scores, k)
    return pick.nonzero().squeeze(1) if indices is None else indices[pick]


def select_prune(
    weight_mag: torch.Tensor,
    grad_mag: torch.Tensor | None,
    active: torch.Tensor,
    k: int,
    order: str,
    rate: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Bool mask with exactly k True entries, all inside ``active``: the weights to prune.

    ``weight_mag`` and ``grad_mag`` are flat magnitudes (``grad_mag`` may be None for the orders that
    do not read it). ``gradient_first`` is FGGP: the pool is the ``pool_size(k, n_active, rate)``
    active entries with the smallest gradient, and the k smallest weights of the pool go.
    """
    one_of("order", order, ORDERS)
    in_range("rate", rate, 0, 1, low_open=True)
    if weight_mag.dim() != 1 or active.shape != weight_mag.shape or active.dtype != torch.bool:
        raise ValueError("active: must be a bool tensor of the same 1-D shape as weight_mag")
    needs_grad = order in ("gradient", "gradient_first", "magnitude_first", "taylor")
    if needs_grad and (grad_mag is None or grad_mag.shape != weight_mag.shape):
        raise ValueError(f"grad_mag: order {order!r} needs a gradient tensor shaped like weight_mag")
    n_active = int(torch.count_nonzero(active))
    idx = None if n_active == active.numel() else active.nonzero().squeeze(1)  # all active: skip the gathers

    def at(t: torch.Tensor) -> torch.Tensor:
        return t if idx is None else t[idx]

    if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k <= n_active:
        raise ValueError(f"k: {k!r} is outside [0, {n_active}] (the number of active weights)")

    out = torch.zeros_like(active)
    if k == 0:
        return out
    if order == "random":
        pick = torch.randperm(n_active, generator=generator, device="cpu")[:k].to(active.device)
        out[pick if idx is None else idx[pick]] = True
        return out
    if order == "magnitude":
        chosen = _among(idx, at(weight_mag), k)
    elif order == "gradient":
        chosen = _among(idx, at(grad_mag), k)
    elif order == "taylor":
        chosen = _among(idx, at(weight_mag) * at(grad_mag), k)
    else:
        first, second = (grad_mag, weight_mag) if order == "gradient_first" else (weight_mag, grad_mag)
        pool = _among(idx, at(first), pool_size(k, n_active, rate))
        chosen = _among(pool, second[pool], k)
    out[chosen] = True
    return out
