"""GraNet's zero-cost neuroregeneration: drop the smallest weights of a layer, regrow by gradient.

Regrowth candidates are the weights inactive *after* the drop, so a weight dropped in this step may
come straight back (at value 0), exactly as in GraNet's code. Per-layer counts do not change.
"""

from __future__ import annotations

import math

import torch

from .selection import k_smallest


def drop_and_regrow(
    mask: torch.Tensor, weight_mag: torch.Tensor, grad_mag: torch.Tensor, fraction: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(new mask, regrown entries) for one flat layer: ceil(fraction * active) go by |w|, as many return by |g|."""
    active = mask.nonzero().squeeze(1)
    n = min(math.ceil(fraction * active.numel()), active.numel())
    if n == 0:
        return mask, torch.zeros_like(mask)
    after = mask.clone()
    after[active[k_smallest(weight_mag[active], n)]] = False
    candidates = (~after).nonzero().squeeze(1)
    grown = torch.zeros_like(mask)
    grown[candidates[k_smallest(-grad_mag[candidates], n)]] = True
    return after | grown, grown
