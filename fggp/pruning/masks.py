"""Which parameters are prunable, and keeping pruned weights at exactly zero."""

from __future__ import annotations

from collections.abc import Iterable
from fnmatch import fnmatchcase

import torch
from torch import nn

PRUNABLE_MODULES = (nn.Conv2d, nn.Linear)


def prunable_parameters(model: nn.Module, exclude: Iterable[str] = ()) -> dict[str, nn.Parameter]:
    """Weights of every Conv2d and Linear (never biases or BatchNorm), minus ``exclude`` (glob patterns)."""
    exclude = list(exclude)
    found = {
        f"{module_name}.weight" if module_name else "weight": module.weight
        for module_name, module in model.named_modules()
        if isinstance(module, PRUNABLE_MODULES)
    }
    for pattern in exclude:
        if not any(fnmatchcase(name, pattern) for name in found):
            listed = ", ".join(list(found)[:6]) + (", ..." if len(found) > 6 else "")
            raise ValueError(f"exclude: {pattern!r} matches no prunable weight (they are: {listed})")
    kept = {n: p for n, p in found.items() if not any(fnmatchcase(n, pat) for pat in exclude)}
    if not kept:
        raise ValueError("model: has no prunable layer (the weights of Conv2d and Linear modules, less exclude)")
    return kept


@torch.no_grad()
def apply_masks(params: list[torch.Tensor], multipliers: list[torch.Tensor], optimizer=None) -> None:
    """Zero pruned weights and every optimizer buffer shaped like them (momentum, Adam moments).

    Done after each optimizer step, so neither momentum nor weight decay can revive a pruned weight.
    """
    torch._foreach_mul_(params, multipliers)
    if optimizer is None:
        return
    buffers, mults = [], []
    for p, m in zip(params, multipliers):
        for value in optimizer.state.get(p, {}).values():
            if torch.is_tensor(value) and value.shape == p.shape:
                buffers.append(value)
                mults.append(m)
    if buffers:
        torch._foreach_mul_(buffers, mults)
