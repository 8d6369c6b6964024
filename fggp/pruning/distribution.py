"""How many weights each layer keeps: ERK / uniform densities, exact integer counts, per-layer floors."""

from __future__ import annotations

import math

from .validate import in_range


def erk_densities(shapes: dict[str, tuple], density: float, power_scale: float = 1.0) -> dict[str, float]:
    """Erdos-Renyi-Kernel densities (Evci et al. 2020): d_i = eps * (sum(shape_i) / prod(shape_i))^power_scale.

    eps is chosen so sum(d_i * N_i) = density * N; a layer whose density would exceed 1 is made dense and
    eps is recomputed for the rest. Growing eps only pushes more layers over 1, so all of them can be
    made dense at once without changing the result.
    """
    in_range("density", density, 0, 1, low_open=True)
    if not shapes:
        raise ValueError("shapes: no layers given")
    sizes = {name: math.prod(shape) for name, shape in shapes.items()}
    scores = {name: (sum(shape) / sizes[name]) ** power_scale for name, shape in shapes.items()}
    budget = density * sum(sizes.values())
    dense: set[str] = set()
    while True:
        rest = [n for n in shapes if n not in dense]
        if not rest:
            return {n: 1.0 for n in shapes}
        eps = (budget - sum(sizes[n] for n in dense)) / sum(scores[n] * sizes[n] for n in rest)
        over = {n for n in rest if eps * scores[n] > 1.0}
        if not over:
            return {n: 1.0 if n in dense else eps * scores[n] for n in shapes}
        dense |= over


def uniform_densities(shapes: dict[str, tuple], density: float) -> dict[str, float]:
    in_range("density", density, 0, 1, low_open=True)
    return {name: float(density) for name in shapes}


DISTRIBUTIONS = {"erk": erk_densities, "uniform": uniform_densities}


def counts_from_densities(sizes: dict[str, int], densities: dict[str, float], total: int) -> dict[str, int]:
    """Integer kept-weight counts near ``densities`` that add up to exactly ``total`` (largest remainder)."""
    raw = {n: min(max(densities[n], 0.0), 1.0) * sizes[n] for n in sizes}
    counts = {n: math.floor(raw[n]) for n in sizes}
    short = total - sum(counts.values())
    by_remainder = sorted(sizes, key=lambda n: (-(raw[n] - counts[n]), list(sizes).index(n)))
    for n in by_remainder:
        if short <= 0:
            break
        if counts[n] < sizes[n]:
            counts[n] += 1
            short -= 1
    if short != 0:
        raise ValueError(f"total: {total} weights cannot be spread over layers of {sum(sizes.values())} weights")
    return counts
