"""N:M semi-structured sparsity: every group of M consecutive weights keeps N (2:4 runs on sparse tensor cores).

A group is M consecutive entries of a row of the weight seen as a matrix ``[shape[0], prod(shape[1:])]``:
for a Linear ``[out, in]`` along ``in``, for a Conv ``[out, in, kh, kw]`` along the flattened
``in * kh * kw`` row (the layout ``torch.sparse.to_sparse_semi_structured`` takes for a Linear, and the
im2col matrix of a convolution). A layer whose row length M does not divide is refused up front: a dense
remainder would leave the layer neither N:M nor at the pattern's sparsity.

Selection under a pattern is the greedy rule "take the weights in order of (score, flat index); a weight
goes if its group still keeps more than N". It is computed without a loop: each group's weights are
ranked within the group (a sort along M), the ones ranked below the group's room (active - N) are the
candidates, and the k smallest candidates go. Because rows divide by M, groups never cross rows or layers,
so the flat index of a weight in a layer (or in the concatenation of layers) gives its group: index // M.
"""

from __future__ import annotations

import math
import re

import torch

from .selection import _scores, get_order, k_smallest, pool_size
from .validate import in_range

_PATTERN = re.compile(r"([0-9]+):([0-9]+)")


def parse_pattern(value) -> tuple[int, int]:
    """(N, M) from ``"N:M"`` with whole numbers 1 <= N < M; anything else is a one-line ``pattern:`` error."""
    found = _PATTERN.fullmatch(value) if isinstance(value, str) else None
    if found:
        n, m = int(found.group(1)), int(found.group(2))
        if 1 <= n < m:
            return n, m
    yaml = (" (YAML 1.1 reads an unquoted 2:4 as the base-60 number 124: quote it, '2:4')"
            if isinstance(value, int) and not isinstance(value, bool) else "")
    raise ValueError(f"pattern: {value!r} is not 'N:M' with whole numbers 1 <= N < M (e.g. '2:4' keeps 2 of "
                     f"every 4 consecutive weights), or None for unstructured{yaml}")


def _nm(pattern) -> tuple[int, int]:
    return pattern if isinstance(pattern, tuple) else parse_pattern(pattern)


def pattern_sparsity(pattern) -> float:
    """The sparsity a pattern ends at: 1 - N/M."""
    n, m = _nm(pattern)
    return 1.0 - n / m


def row_length(shape: tuple) -> int:
    """Entries per row of the weight seen as ``[shape[0], prod(shape[1:])]`` (1 for a 1-D tensor)."""
    return math.prod(shape[1:]) if len(shape) >= 1 else 1


def check_layers(shapes: dict[str, tuple], pattern) -> None:
    """Refuse, in one line, a layer whose rows do not split into groups of M."""
    n, m = _nm(pattern)
    for name, shape in shapes.items():
        row = row_length(tuple(shape))
        if row % m:
            raise ValueError(
                f"pattern: '{n}:{m}' groups {m} consecutive weights of a row, but layer {name} (shape "
                f"{tuple(shape)}) has rows of {row}; leave it out with exclude=['{name}'] or use an M that "
                f"divides {row}"
            )


def pattern_target(pattern, target: float | None, initial: float) -> float:
    """The target sparsity of a patterned run: 1 - N/M, which ``target`` may only repeat.

    A pattern fixes the end point; another target could not leave every group at exactly N of M. A sparse
    start is refused: its random mask (ERK or uniform per layer) ignores the groups.
    """
    n, m = _nm(pattern)
    final = 1.0 - n / m
    if target is not None and not (isinstance(target, (int, float)) and not isinstance(target, bool)
                                   and math.isclose(target, final, rel_tol=0.0, abs_tol=1e-9)):
        raise ValueError(f"target_sparsity: {target!r} is not {final!r}, where pattern '{n}:{m}' ends (1 - N/M); "
                         f"pass target_sparsity={final!r} or leave it out")
    if initial != 0:
        raise ValueError(f"initial_sparsity: {initial!r} cannot start a run with pattern '{n}:{m}' (the random "
                         "sparse start ignores the groups); start dense (0.0)")
    return final


def group_counts(mask: torch.Tensor, pattern) -> torch.Tensor:
    """Active weights per group of M (1-D, one entry per group) of a layer's mask, any shape."""
    _, m = _nm(pattern)
    return torch.count_nonzero(mask.reshape(-1, m), dim=1)


def removable(active: torch.Tensor, pattern) -> int:
    """How many active weights may still go: the sum over groups of (active - N), groups below N giving 0."""
    n, _ = _nm(pattern)
    return int((group_counts(active, pattern) - n).clamp_min(0).sum())


def _candidates(scores: torch.Tensor, active: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """Bool mask of the weights the greedy rule could take: in each group, the (active - N) active ones of
    lowest (score, index). ``scores`` is flat and finite on the active entries (anything elsewhere)."""
    s = scores if scores.is_floating_point() else scores.to(torch.float64)
    s = s.masked_fill(~active, math.inf).view(-1, m)  # inactive rank last in their group
    room = (torch.count_nonzero(active.view(-1, m), dim=1) - n).clamp_min(0)
    ranked = torch.sort(s, dim=1, stable=True).indices  # stable: ties to the lower index
    take = torch.arange(m, device=s.device) < room.unsqueeze(1)
    return torch.zeros_like(take).scatter_(1, ranked, take).view(-1)


def _full(values: torch.Tensor, idx: torch.Tensor | None, size: int) -> torch.Tensor:
    """Scores of the active entries laid out over all ``size`` entries (inactive ones never read)."""
    if idx is None:
        return values
    out = torch.zeros(size, dtype=values.dtype, device=values.device)
    out[idx] = values
    return out


def _check(weight_mag, grad_mag, active, order, m):
    spec = get_order(order)
    if weight_mag.dim() != 1 or active.shape != weight_mag.shape or active.dtype != torch.bool:
        raise ValueError("active: must be a bool tensor of the same 1-D shape as weight_mag")
    if weight_mag.numel() % m:
        raise ValueError(f"pattern: groups of {m} do not divide the {weight_mag.numel()} weights given")
    if spec.uses_gradient and (grad_mag is None or grad_mag.shape != weight_mag.shape):
        raise ValueError(f"grad_mag: order {order!r} needs a gradient tensor shaped like weight_mag")
    return spec


def _first_scores(spec, weight_mag, grad_mag, active, order, generator):
    """The order's first score (one-score orders: their score; two-step: the pool score; random: a seeded
    random priority) of every entry, laid out flat; only the active entries are scored."""
    n_active = int(torch.count_nonzero(active))
    idx = None if n_active == active.numel() else active.nonzero().squeeze(1)
    if spec.random:
        prio = torch.randperm(n_active, generator=generator, device="cpu").to(active.device, torch.float64)
        return _full(prio, idx, active.numel())
    w = weight_mag if idx is None else weight_mag[idx]
    g = None if not spec.uses_gradient else (grad_mag if idx is None else grad_mag[idx])
    fn = spec.pool if spec.two_step else spec.score
    return _full(_scores(fn, w, g, order, idx), idx, active.numel())


def select_nm(
    weight_mag: torch.Tensor,
    grad_mag: torch.Tensor | None,
    active: torch.Tensor,
    k: int,
    order: str,
    pattern,
    rate: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Bool mask of exactly k active weights to prune such that every group of M keeps at least N.

    One-score orders (and ``random``, with a seeded random priority per active weight): take the active
    weights in order of (score, flat index) and let one go while its group keeps more than N. Two-step
    orders: the pool is the ``pool_size(k, removable, rate)`` weights that rule takes by the pool score (so
    any subset of it leaves every group at N or more), and the k smallest of the second score in the pool
    go (ties to the lower index). ``pattern``: ``"N:M"`` or ``(N, M)``.
    """
    n, m = _nm(pattern)
    spec = _check(weight_mag, grad_mag, active, order, m)
    in_range("rate", rate, 0, 1, low_open=True)
    room = removable(active, (n, m))
    if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k <= room:
        raise ValueError(f"k: {k!r} is outside [0, {room}] (the active weights pattern '{n}:{m}' lets go, "
                         f"every group keeping {n})")
    out = torch.zeros_like(active)
    if k == 0:
        return out
    first = _first_scores(spec, weight_mag, grad_mag, active, order, generator)
    cand = _candidates(first, active, n, m).nonzero().squeeze(1)
    if not spec.two_step:
        out[cand[k_smallest(first[cand], k)]] = True
        return out
    pool = cand[k_smallest(first[cand], pool_size(k, room, rate))]
    g = grad_mag[pool] if spec.uses_gradient else None
    second = _scores(spec.then, weight_mag[pool], g, order, pool)
    out[pool[k_smallest(second, k)]] = True
    return out


def pool_mask_nm(weight_mag: torch.Tensor, grad_mag: torch.Tensor | None, active: torch.Tensor, size: int,
                 order: str, pattern) -> torch.Tensor:
    """One layer's share of a per-layer pool under a pattern: the ``size`` weights the greedy rule takes by
    the two-step order's pool score (at most the layer's removable count)."""
    n, m = _nm(pattern)
    spec = _check(weight_mag, grad_mag, active, order, m)
    if not spec.two_step:
        raise ValueError(f"order: {order!r} has no candidate pool (it is not a two-step order)")
    out = torch.zeros_like(active)
    if size <= 0:
        return out
    first = _first_scores(spec, weight_mag, grad_mag, active, order, None)
    cand = _candidates(first, active, n, m).nonzero().squeeze(1)
    out[cand[k_smallest(first[cand], size)]] = True
    return out
