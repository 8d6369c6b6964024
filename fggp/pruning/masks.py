"""Which parameters are prunable, and keeping pruned weights at exactly zero."""

from __future__ import annotations

from collections.abc import Iterable
from fnmatch import fnmatchcase

import torch
from torch import nn

# Modules whose ``weight`` is prunable by default: the layers that multiply the input by a weight matrix.
# Subclasses count (MultiheadAttention's ``out_proj`` is a Linear subclass). MultiheadAttention's own input
# projections are added by ``_default_weights``; embeddings, norms, recurrent layers and biases never are.
PRUNABLE_MODULES = (
    nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d,
)
_ATTENTION_WEIGHTS = ("in_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight")
_DEFAULT = ("the weights of Linear, Conv1d/2d/3d, ConvTranspose1d/2d/3d and MultiheadAttention's projections, "
            "trainable ones only")


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside DistributedDataParallel / DataParallel (and torch.compile), so that parameter names
    carry no ``module.`` prefix and a checkpoint saved under a wrapper loads on the bare model."""
    while True:
        if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            model = model.module
        elif type(model).__name__ == "OptimizedModule" and isinstance(getattr(model, "_orig_mod", None), nn.Module):
            model = model._orig_mod
        else:
            return model


def _patterns(field: str, value) -> list[str]:
    """A list of glob patterns; a bare string is one pattern (not its characters)."""
    if isinstance(value, str):
        return [value]
    patterns = list(value)
    for p in patterns:
        if not isinstance(p, str):
            raise ValueError(f"{field}: {p!r} is not a glob pattern (give names such as 'features.*.weight')")
    return patterns


def _listed(names: list[str], most: int = 8) -> str:
    return ", ".join(names[:most]) + (", ..." if len(names) > most else "")


def _default_weights(model: nn.Module) -> set[int]:
    """ids of the Parameters prunable by default (ids, since a shared Parameter has several owners)."""
    chosen = set()
    for module in model.modules():
        if isinstance(module, PRUNABLE_MODULES) and isinstance(module.weight, nn.Parameter):
            chosen.add(id(module.weight))
        elif isinstance(module, nn.MultiheadAttention):
            for attr in _ATTENTION_WEIGHTS:
                p = getattr(module, attr, None)
                if isinstance(p, nn.Parameter):
                    chosen.add(id(p))
    return chosen


def prunable_parameters(model: nn.Module, exclude: Iterable[str] = (), *,
                        include: Iterable[str] | None = None) -> dict[str, nn.Parameter]:
    """The parameters to prune, by their ``named_parameters()`` names (a shared Parameter once, under its
    first name; a DDP / DataParallel wrapper is looked through, so names have no ``module.`` prefix).

    Default: the trainable weights of Linear, Conv and ConvTranspose layers and MultiheadAttention's
    projections; never biases, norms or embeddings. ``include`` (glob patterns over the names) replaces
    the default by exactly the matching parameters, of any module and frozen or not; ``exclude`` (glob
    patterns) then removes some. ``exclude`` stays the second positional argument for older callers.
    """
    model = unwrap(model)
    exclude = _patterns("exclude", exclude)
    named = dict(model.named_parameters())
    if include is None:
        default = _default_weights(model)
        found = {n: p for n, p in named.items() if id(p) in default and p.requires_grad}
    else:
        include = _patterns("include", include)
        for pattern in include:
            if not any(fnmatchcase(n, pattern) for n in named):
                raise ValueError(f"include: {pattern!r} matches no parameter (they are: {_listed(list(named))})")
        found = {n: p for n, p in named.items() if any(fnmatchcase(n, pat) for pat in include)}
    for pattern in exclude:
        if not any(fnmatchcase(n, pattern) for n in found):
            raise ValueError(f"exclude: {pattern!r} matches no prunable parameter (they are: {_listed(list(found))})")
    kept = {n: p for n, p in found.items() if not any(fnmatchcase(n, pat) for pat in exclude)}
    for n, p in kept.items():
        if isinstance(p, nn.parameter.UninitializedParameter):
            raise ValueError(f"model: {n} is an uninitialized lazy parameter; run one forward pass before pruning")
    if not kept:
        chosen = _DEFAULT if include is None else f"include={include}"
        raise ValueError(f"model: no prunable parameter is left (chosen: {chosen}; exclude={exclude}); "
                         "name the parameters to prune with include=")
    return kept


def output_counts(model: nn.Module, params: dict[str, nn.Parameter]) -> dict[str, int]:
    """Outputs per prunable tensor: ``shape[0]``, except a ConvTranspose weight (in, out / groups, ...),
    whose outputs are ``shape[1] * groups``. A layer keeping fewer weights than its outputs has outputs
    that no longer depend on its input."""
    transposed = {id(m.weight): m.groups for m in unwrap(model).modules()
                  if isinstance(m, nn.modules.conv._ConvTransposeNd)}
    return {n: (p.shape[1] * transposed[id(p)] if id(p) in transposed else p.shape[0]) if p.dim() else 1
            for n, p in params.items()}


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
