"""Per-layer floors of kept weights (Global MP's Minimum Threshold) and how the rest of a budget is shared.

Gupta et al. (2024) give every layer a floor of ``int(N * 0.05 / 100)`` kept weights (``N``: all prunable
weights); a layer smaller than the floor stays dense. Their ``prune_withMT.py`` starts from the per-layer
sparsities of plain global magnitude pruning, clamps every layer that would keep fewer weights than the
floor to exactly the floor, and scales the other layers' sparsities up by a common factor until the total
is met, in a loop. The loop's limit is computed here directly: the layers end up clamped at their floor or
at ``lambda`` times their unconstrained pruned count, for the one ``lambda`` that meets the total, and the
counts are rounded to whole weights that add up to the target exactly (the authors' ``int()`` per layer
keeps up to one extra weight per layer).
"""

from __future__ import annotations

import math

from .validate import Infeasible


def floor_counts(sizes: dict[str, int], min_keep: int | float, total: int | None = None) -> dict[str, int]:
    """The floor of each layer: ``min_keep`` weights (an int), or ``int(min_keep * N)`` for a fraction, as
    the authors' ``int(num_weights * min_threshold / 100)``; never more than the layer has."""
    total = sum(sizes.values()) if total is None else total
    floor = math.floor(min_keep * total) if isinstance(min_keep, float) else int(min_keep)
    return {n: min(floor, size) for n, size in sizes.items()}


def check_feasible(sizes: dict[str, int], floors: dict[str, int], target_sparsity: float,
                   active: dict[str, int] | None = None) -> None:
    """Refuse a target whose budget is smaller than what the floors keep (Infeasible, one line).

    ``active``: the kept counts at the start (a sparse start can leave a layer below its floor; it then
    keeps what it has).
    """
    total = sum(sizes.values())
    keep = round((1 - target_sparsity) * total)
    active = sizes if active is None else active
    needed = sum(min(floors[n], active[n]) for n in sizes)
    if needed > keep:
        floor = max(floors.values())
        at_floor = sum(1 for n in sizes if floors[n] == floor < sizes[n])
        raise Infeasible(
            f"min_keep: the per-layer floors keep {needed} weights ({at_floor} layers x {floor}, smaller layers "
            f"whole), more than the {keep} "
            f"that target_sparsity {target_sparsity} allows; the highest reachable target is "
            f"{math.floor((1 - needed / total) * 1e4) / 1e4}"
        )


def minimum_threshold(pruned: dict[str, int], most: dict[str, int], total: int) -> dict[str, int]:
    """Integer pruned counts per layer that add up to ``total``, each at most ``most[n]`` (its size less
    its floor), found by the authors' clamp-and-rescale from the unconstrained counts ``pruned``.

    Exact in integers: a free layer's share is ``need * pruned[n] / base``; floors of those shares plus
    one weight each to the largest remainders (ties to the earlier layer) make the total exact.
    """
    if sum(most.values()) < total:
        raise Infeasible(f"min_keep: the floors leave {sum(most.values())} weights to prune, fewer than {total}")
    clamped = {n for n in pruned if pruned[n] >= most[n]}
    while True:
        free = [n for n in pruned if n not in clamped]
        need = total - sum(most[n] for n in clamped)
        base = sum(pruned[n] for n in free)
        if need > 0 and base == 0:
            raise Infeasible("min_keep: the layers above their floors have nothing to scale (all unpruned)")
        over = {n for n in free if need * pruned[n] > most[n] * base}
        if not over:
            break
        clamped |= over
    counts = {n: most[n] if n in clamped else (need * pruned[n]) // base if base else 0 for n in pruned}
    short = total - sum(counts.values())
    by_remainder = sorted(free, key=lambda n: (-((need * pruned[n]) % base if base else 0), list(pruned).index(n)))
    for n in by_remainder[:short]:
        counts[n] += 1
    return counts
