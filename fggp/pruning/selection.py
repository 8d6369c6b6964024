"""Which k active weights a pruning step removes.

Orders live in a registry (``ORDERS``; add one with ``register_order``). Every order reduces to
"the k smallest of some score among some entries, ties to the lower flat index",
done with ``torch.kthvalue`` plus elementwise passes: a full sort of ResNet-50's 23.5 M weights costs
about six times as much (REFERENCE.md, "Numbers worth knowing").
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction

import torch

from .validate import in_range, one_of

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


@dataclass(frozen=True)
class Order:
    """A named selection order: prune the k smallest ``score(|w|, |g|)``, or, for a two-step order, the k
    smallest ``then`` among a pool of the ``pool_size`` smallest ``pool`` (rate = k / pool size).

    Scores are functions of the flat magnitudes of the active weights and their gradients (``g`` is None
    when ``uses_gradient`` is False); they return one float per entry. Ties go to the lower index.
    """

    name: str
    score: Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor] | None = None
    pool: Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor] | None = None
    then: Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor] | None = None
    uses_gradient: bool = True
    random: bool = False

    @property
    def two_step(self) -> bool:
        return self.pool is not None


ORDERS: dict[str, Order] = {}


def register_order(name: str, score=None, *, pool=None, then=None, uses_gradient: bool = True) -> Order:
    """Make a selection order available by name to recipes, the Pruner, runs, sweeps and notebook 01.

        register_order("taylor2", lambda w, g: (w * g) ** 2)              # one score
        register_order("grad_then_taylor", pool=lambda w, g: g, then=lambda w, g: w * g)   # two steps

    A name already taken is refused, so a plugin cannot silently change a built-in order. Each function is
    probed once on 64 random magnitudes: one that raises, returns no tensor, the wrong shape or NaN / inf
    is refused here, in one ``order:`` line, instead of at the first pruning step of a run.
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"order name: {name!r} must be a non-empty identifier")
    if name in ORDERS:
        raise ValueError(f"order name: {name!r} is already registered")
    if (score is None) == (pool is None) or (pool is None) != (then is None):
        raise ValueError(f"order {name!r}: give either score=, or both pool= and then=")
    for field, fn in (("score", score), ("pool", pool), ("then", then)):
        if fn is not None and not callable(fn):
            raise ValueError(f"order {name!r}: {field} must be a function of (w, g)")
        if fn is not None:
            _probe(name, field, fn, bool(uses_gradient))
    ORDERS[name] = Order(name, score, pool, then, bool(uses_gradient))
    return ORDERS[name]


PROBE_SIZE = 64


def _probe(name: str, field: str, fn, uses_gradient: bool) -> None:
    """Call a plugin's score once on 64 seeded random magnitudes, at registration (before any data loads):
    a score that raises, returns no tensor, the wrong shape or NaN / inf would otherwise fail, or silently
    prune less, at the first pruning step of every run that uses it."""
    gen = torch.Generator().manual_seed(0)
    w = torch.rand(PROBE_SIZE, generator=gen)
    g = torch.rand(PROBE_SIZE, generator=gen) if uses_gradient else None
    what = "" if field == "score" else f" (its {field} score)"
    at = f"on a probe ({PROBE_SIZE} weights)"
    try:
        out = fn(w, g)
    except Exception as err:  # noqa: BLE001 - any failure of a plugin's function is reported the same way
        text = " ".join(str(err).split())
        raise ValueError(f"order: {name!r}{what} raises {at}: {type(err).__name__}: {text}") from None
    if not torch.is_tensor(out):
        raise ValueError(f"order: {name!r}{what} returns {type(out).__name__} {at}, not a tensor of "
                         f"{PROBE_SIZE} scores")
    if tuple(out.shape) != (PROBE_SIZE,):
        raise ValueError(f"order: {name!r}{what} returns shape {tuple(out.shape)} {at}; it must return one "
                         f"score per weight, shape ({PROBE_SIZE},)")
    if out.dtype == torch.bool or out.is_complex():
        raise ValueError(f"order: {name!r}{what} returns {out.dtype} scores {at}; they must be real numbers")
    bad = int((~torch.isfinite(out)).sum())
    if bad:
        raise ValueError(f"order: {name!r}{what} returns non-finite scores {at}: {bad} of {PROBE_SIZE} are "
                         "NaN or inf")


def _builtin(order: Order) -> None:
    ORDERS[order.name] = order


_builtin(Order("magnitude", score=lambda w, g: w, uses_gradient=False))
_builtin(Order("gradient", score=lambda w, g: g))
_builtin(Order("gradient_first", pool=lambda w, g: g, then=lambda w, g: w))  # FGGP
_builtin(Order("magnitude_first", pool=lambda w, g: w, then=lambda w, g: g))
_builtin(Order("taylor", score=lambda w, g: w * g))
_builtin(Order("random", uses_gradient=False, random=True))


def get_order(name: str) -> Order:
    one_of("order", name, ORDERS)
    return ORDERS[name]


def _many(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


class NonFiniteScores(RuntimeError):
    """An order scored some weights NaN or inf: no ranking of them is meaningful, so the step fails.

    ``positions``: the flat indices of those weights in the tensors given to the selection call. The
    Pruner raises it again with the layers named and ``diverged`` set: True when the weights or gradients
    themselves are not finite (the run diverged), False when the order's score made them so.
    """

    def __init__(self, message: str, *, order: str, count: int, positions: torch.Tensor | None = None,
                 layers: dict[str, int] | None = None, diverged: bool | None = None):
        super().__init__(message)
        self.order, self.count, self.positions = order, count, positions
        self.layers, self.diverged = layers, diverged


def _scores(fn, w: torch.Tensor, g: torch.Tensor | None, name: str,
            where: torch.Tensor | None = None) -> torch.Tensor:
    """``fn(w, g)``, checked: one real number per entry, all finite (one ``isfinite().all()`` pass).

    ``where`` maps the entries of ``w`` to flat indices of the caller's tensors, for the error."""
    out = fn(w, g)
    if not torch.is_tensor(out) or out.shape != w.shape:
        raise ValueError(f"order {name!r}: its score must return a tensor shaped like w ({tuple(w.shape)})")
    if out.dtype == torch.bool or out.is_complex():
        raise ValueError(f"order {name!r}: its score must return real numbers, not {out.dtype}")
    if not bool(torch.isfinite(out).all()):
        bad = (~torch.isfinite(out)).nonzero().squeeze(1)
        raise NonFiniteScores(
            f"order: {name!r} gives {_many(bad.numel(), 'non-finite score')} (NaN or inf) of {out.numel()} "
            "scored; a pruning step cannot rank them",
            order=name, count=bad.numel(), positions=bad if where is None else where[bad])
    return out


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
    spec = get_order(order)
    in_range("rate", rate, 0, 1, low_open=True)
    if weight_mag.dim() != 1 or active.shape != weight_mag.shape or active.dtype != torch.bool:
        raise ValueError("active: must be a bool tensor of the same 1-D shape as weight_mag")
    if spec.uses_gradient and (grad_mag is None or grad_mag.shape != weight_mag.shape):
        raise ValueError(f"grad_mag: order {order!r} needs a gradient tensor shaped like weight_mag")
    n_active = int(torch.count_nonzero(active))
    idx = None if n_active == active.numel() else active.nonzero().squeeze(1)  # all active: skip the gathers

    def at(t: torch.Tensor | None) -> torch.Tensor | None:
        return t if idx is None or t is None else t[idx]

    if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k <= n_active:
        raise ValueError(f"k: {k!r} is outside [0, {n_active}] (the number of active weights)")

    out = torch.zeros_like(active)
    if k == 0:
        return out
    if spec.random:
        pick = torch.randperm(n_active, generator=generator, device="cpu")[:k].to(active.device)
        out[pick if idx is None else idx[pick]] = True
        return out
    w, g = at(weight_mag), at(grad_mag) if spec.uses_gradient else None
    if not spec.two_step:
        chosen = _among(idx, _scores(spec.score, w, g, order, idx), k)
    else:
        pool = k_smallest(_scores(spec.pool, w, g, order, idx), pool_size(k, n_active, rate)).nonzero().squeeze(1)
        second = _scores(spec.then, w[pool], None if g is None else g[pool], order,
                         pool if idx is None else idx[pool])
        chosen = pool[k_smallest(second, k)]
        if idx is not None:
            chosen = idx[chosen]
    out[chosen] = True
    return out


def pool_mask(weight_mag: torch.Tensor, grad_mag: torch.Tensor | None, active: torch.Tensor, m: int,
              order: str) -> torch.Tensor:
    """The m active entries a two-step order puts in its candidate pool (one layer's share of a
    per-layer pool)."""
    spec = get_order(order)
    if not spec.two_step:
        raise ValueError(f"order: {order!r} has no candidate pool (it is not a two-step order)")
    idx = active.nonzero().squeeze(1)
    g = None if grad_mag is None or not spec.uses_gradient else grad_mag[idx]
    out = torch.zeros_like(active)
    out[idx[k_smallest(_scores(spec.pool, weight_mag[idx], g, order, idx), m)]] = True
    return out


def select_in_pool(weight_mag: torch.Tensor, grad_mag: torch.Tensor | None, pool: torch.Tensor, k: int,
                   order: str) -> torch.Tensor:
    """The k entries of a given pool that a two-step order's second score removes."""
    spec = get_order(order)
    idx = pool.nonzero().squeeze(1)
    g = None if grad_mag is None or not spec.uses_gradient else grad_mag[idx]
    out = torch.zeros_like(pool)
    out[idx[k_smallest(_scores(spec.then, weight_mag[idx], g, order, idx), k)]] = True
    return out
