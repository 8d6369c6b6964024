"""Warnings for pruning that silently does less, or worse, than asked, and keeping ranks' masks equal.

A prunable set that misses most of the model (a transformer whose embeddings dominate), or a layer that a
global ranking empties, still trains and reports the target sparsity; these warnings say so at the time.
They are ordinary ``warnings`` categories, so ``warnings.simplefilter("error", PruningWarning)`` turns
them into errors.
"""

from __future__ import annotations

import sys
import warnings

import torch


class PruningWarning(UserWarning):
    """The pruner does something the user probably did not intend."""


class LayerCollapseWarning(PruningWarning):
    """A layer kept fewer weights than its outputs: some outputs no longer depend on the input."""


def warn(message: str, category: type[Warning] = PruningWarning) -> None:
    """``warnings.warn`` attributed to the first caller outside fggp/pruning (the user's training loop),
    whatever the depth of the call inside the pruner (torch.no_grad's wrapper frames skipped too)."""
    frame, level = sys._getframe(0), 1
    while frame is not None and (frame.f_globals.get("__name__", "").startswith(__package__ + ".")
                                 or frame.f_globals.get("__name__") == "torch.utils._contextlib"):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)


def coverage_warning(pruned: int, model_total: int, target: float) -> None:
    """Warn when the prunable set is under half the model: the target then says little about the model."""
    if model_total and pruned < 0.5 * model_total:
        warn(f"pruner: the prunable parameters are {pruned / model_total:.1%} of the model ({pruned:,} of "
             f"{model_total:,}), so a target of {target:.4g} prunes only {target * pruned / model_total:.1%} "
             "of it; widen the set by name with include=['*.weight', ...]", PruningWarning)


class CollapseWatch:
    """Warns once when a layer first keeps fewer weights than its outputs, and once more if it empties."""

    def __init__(self, outputs: dict[str, int], shapes: dict[str, tuple]):
        # 1-D tensors (biases, norm scales chosen by include=) have no input to lose
        self.outputs = {n: o for n, o in outputs.items() if len(shapes[n]) >= 2}
        self.level = {n: 0 for n in self.outputs}  # 0: fine, 1: warned below its outputs, 2: warned empty

    def check(self, kept: dict[str, int]) -> None:
        for n, outs in self.outputs.items():
            k = kept[n]
            if k == 0 and self.level[n] < 2:
                self.level[n] = 2
                warn(f"layer {n} keeps no weights: none of its {outs} outputs depends on the input any more",
                     LayerCollapseWarning)
            elif 0 < k < outs and self.level[n] < 1:
                self.level[n] = 1
                warn(f"layer {n} keeps {k} weights for its {outs} outputs: at least {outs - k} outputs no "
                     "longer depend on the input", LayerCollapseWarning)


def distributed_world() -> int:
    """World size of an initialized torch.distributed process group, else 1."""
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


def broadcast_from_rank0(masks: list[torch.Tensor]) -> list[torch.Tensor]:
    """The masks as rank 0 has them, on every rank (one flat uint8 broadcast; gloo and NCCL take uint8).

    Each rank chooses its masks from the same all-reduced gradients and the same weights, so they should
    agree already; the broadcast makes it certain (ties, per-rank seeds, non-deterministic kernels).
    """
    if distributed_world() <= 1 or not masks:
        return masks
    flat = torch.cat([m.flatten() for m in masks]).to(torch.uint8)
    if torch.distributed.get_backend() == "nccl" and flat.device.type != "cuda":
        flat = flat.to(torch.device("cuda", torch.cuda.current_device()))  # NCCL moves CUDA tensors only
    torch.distributed.broadcast(flat, src=0)
    parts = flat.bool().split([m.numel() for m in masks])
    return [p.view_as(m).to(m.device) for p, m in zip(parts, masks)]
