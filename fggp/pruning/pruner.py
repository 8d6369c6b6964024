"""The object that hooks pruning into any PyTorch training loop.

    pruner = Pruner(model, optimizer, "fggp", target_sparsity=0.9, end_step=40_000, prune_every=1000)
    loss.backward(); pruner.before_step()    # record |grad|, zero the gradients of pruned weights
    optimizer.step(); pruner.after_step()    # re-apply masks to weights and momentum; prune when due

Steps are counted from 1 (the t-th completed optimizer step). A pruning step uses the gradient of its
own minibatch (or the mean |grad| over the recipe's ``grad_window`` minibatches ending there) and the
weights after that step's update, as GraNet's ``Masking`` does.
"""

from __future__ import annotations

import hashlib
import math

import torch
from torch import nn

from .. import faults
from .distribution import DISTRIBUTIONS, counts_from_densities
from .masks import apply_masks, prunable_parameters
from .recipes import Recipe, get_recipe
from .regrowth import drop_and_regrow
from .schedules import SparsitySchedule, annealed_rate, cosine_decay
from .selection import select_prune


class Pruner:
    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer | None = None,
        recipe: str | Recipe = "fggp",
        *,
        target_sparsity: float,
        end_step: int,
        initial_sparsity: float = 0.0,
        start_step: int = 0,
        prune_every: int = 1000,
        total_steps: int | None = None,
        seed: int = 0,
        exclude=(),
        **recipe_overrides,
    ):
        self.recipe = get_recipe(recipe, **recipe_overrides)
        self.optimizer = optimizer
        self.params = prunable_parameters(model, exclude)
        self.names = list(self.params)
        self.sizes = {n: p.numel() for n, p in self.params.items()}
        self.total = sum(self.sizes.values())
        self.schedule = SparsitySchedule(
            initial=initial_sparsity, final=target_sparsity, start=start_step, end=end_step,
            every=prune_every, kind=self.recipe.schedule, power=self.recipe.power,
        )
        self.total_steps = total_steps if total_steps is not None else end_step
        self.pruning_steps = self.schedule.pruning_steps()
        self.floors = self._floors()
        self._check_reachable()

        self.step = 0
        self.generator = torch.Generator().manual_seed(seed)
        self._grad_sum: dict[str, torch.Tensor] | None = None
        self._grad_count = 0
        self.masks = self._initial_masks()
        self._refresh()

    # ----------------------------------------------------------------- set-up
    def _floors(self) -> dict[str, int]:
        floor = self.recipe.min_keep
        if isinstance(floor, float):
            floor = math.ceil(floor * self.total)
        return {n: min(floor, size) for n, size in self.sizes.items()}

    def _check_reachable(self) -> None:
        if not self.recipe.prunes:
            return
        keep = round((1 - self.schedule.final) * self.total)
        if self.recipe.scope == "global" and sum(self.floors.values()) > keep:
            raise ValueError(
                f"min_keep: the per-layer floors keep {sum(self.floors.values())} weights, more than the "
                f"{keep} that target_sparsity {self.schedule.final} allows; lower min_keep or the target"
            )

    def _initial_masks(self) -> dict[str, torch.Tensor]:
        """Dense, or a random mask per layer at the initial sparsity (ERK or uniform), exact in total."""
        masks = {n: torch.ones_like(p, dtype=torch.bool) for n, p in self.params.items()}
        if not self.recipe.prunes or self.schedule.initial == 0:
            return masks
        density = 1.0 - self.schedule.initial
        shapes = {n: tuple(p.shape) for n, p in self.params.items()}
        densities = DISTRIBUTIONS[self.recipe.initial_distribution](shapes, density)
        counts = counts_from_densities(self.sizes, densities, round(density * self.total))
        for n, mask in masks.items():
            flat = torch.zeros(self.sizes[n], dtype=torch.bool)
            flat[torch.randperm(self.sizes[n], generator=self.generator)[: counts[n]]] = True
            masks[n] = flat.view_as(mask).to(mask.device)
        return masks

    def _refresh(self) -> None:
        """Cache float multipliers of the masks, laid out like their weights (channels_last too), and zero
        what they prune."""
        self._mults = [torch.empty_like(self.params[n]).copy_(self.masks[n]) for n in self.names]
        self._weights = [self.params[n] for n in self.names]
        if self.recipe.prunes:
            apply_masks(self._weights, self._mults, self.optimizer)

    # ------------------------------------------------------------ loop hooks
    @torch.no_grad()
    def before_step(self) -> None:
        """After ``loss.backward()``: keep |grad| when a pruning step needs it, then zero pruned grads."""
        if not self.recipe.prunes:
            return
        upcoming = self.step + 1
        grads = [self.params[n].grad for n in self.names]
        if self.recipe.uses_gradient:
            due = self.schedule.next_pruning_step(upcoming)
            if due is not None and due - upcoming < self.recipe.grad_window:
                self._record(grads)
        present = [(g, m) for g, m in zip(grads, self._mults) if g is not None]
        if present:
            torch._foreach_mul_([g for g, _ in present], [m for _, m in present])

    @torch.no_grad()
    def after_step(self) -> None:
        """After ``optimizer.step()``: re-apply masks (weights and momentum), then prune if due."""
        self.step += 1
        if not self.recipe.prunes:
            return
        apply_masks(self._weights, self._mults, self.optimizer)
        if self.schedule.is_pruning_step(self.step):
            self.prune_now()

    def _record(self, grads) -> None:
        mags = {
            n: (g.detach().abs().flatten().float() if g is not None else torch.zeros(self.sizes[n], device=self.params[n].device))
            for n, g in zip(self.names, grads)
        }
        if self._grad_sum is None:
            self._grad_sum, self._grad_count = mags, 1
        else:
            for n in self.names:
                self._grad_sum[n].add_(mags[n])
            self._grad_count += 1

    def _take_grad(self) -> dict[str, torch.Tensor] | None:
        if not self.recipe.uses_gradient:
            return None
        if self._grad_sum is None:
            raise RuntimeError(
                f"pruning step {self.step} needs |grad| but before_step() recorded none: "
                "call pruner.before_step() after loss.backward() and before optimizer.step()"
            )
        grads = {n: g / self._grad_count for n, g in self._grad_sum.items()}
        self._grad_sum, self._grad_count = None, 0
        return grads

    # --------------------------------------------------------------- pruning
    @torch.no_grad()
    def prune_now(self) -> None:
        """Prune to the schedule's sparsity at the current step (and regrow, for GraNet)."""
        grads = self._take_grad()
        weights = {n: self.params[n].detach().abs().flatten().float() for n in self.names}
        masks = {n: self.masks[n].flatten() for n in self.names}
        target = self.schedule.sparsity(self.step)
        index = self.pruning_steps.index(self.step) if self.step in self.pruning_steps else 0
        r = self.recipe
        rate = annealed_rate(index, len(self.pruning_steps), r.rate, r.rate_end, r.rate_schedule)

        if r.scope == "global":
            k = sum(_count(m) for m in masks.values()) - round((1 - target) * self.total)
            pruned = self._select_global(max(k, 0), weights, grads, masks, rate)
        else:
            pruned = {}
            for n in self.names:
                active = _count(masks[n])
                k = min(active - round((1 - target) * self.sizes[n]), active - min(self.floors[n], active))
                pruned[n] = select_prune(weights[n], _get(grads, n), masks[n], max(k, 0), r.order, rate, self.generator)
        new = {n: masks[n] & ~pruned[n] for n in self.names}

        grown = {}
        if r.regrow_fraction > 0:
            fraction = cosine_decay(self.step, self.total_steps, r.regrow_fraction)
            for n in self.names:
                new[n], grown[n] = drop_and_regrow(new[n], weights[n], grads[n], fraction)

        faults.reach("prune")
        self.masks = {n: new[n].view_as(self.masks[n]) for n in self.names}
        self._refresh()
        for n, g in grown.items():
            self._zero_entries(n, g.view_as(self.masks[n]))

    def _select_global(self, k, weights, grads, masks, rate) -> dict[str, torch.Tensor]:
        """One ranking across all layers; a layer at its floor is held there and the rest prune harder.

        A layer that the unconstrained ranking would push below its floor also reaches the floor in the
        constrained one (freed slots only go to higher scores), so fixing such layers at the floor and
        ranking the rest again is exact for single-score orders.
        """
        active = {n: _count(masks[n]) for n in self.names}
        caps = {n: active[n] - min(self.floors[n], active[n]) for n in self.names}
        free, held = list(self.names), []
        while True:
            remaining = k - sum(caps[n] for n in held)
            chosen = select_prune(
                _cat(weights, free), _cat(grads, free), _cat(masks, free), remaining,
                self.recipe.order, rate, self.generator,
            )
            parts = dict(zip(free, chosen.split([self.sizes[n] for n in free])))
            over = [n for n in free if _count(parts[n]) > caps[n]]
            if not over:
                break
            held += over
            free = [n for n in free if n not in over]
        for n in held:
            parts[n] = select_prune(weights[n], _get(grads, n), masks[n], caps[n], self.recipe.order, rate, self.generator)
        return parts

    def _zero_entries(self, name: str, where: torch.Tensor) -> None:
        """Regrown weights start at 0 with no momentum."""
        p = self.params[name]
        p.data.masked_fill_(where, 0)
        if self.optimizer is not None:
            for value in self.optimizer.state.get(p, {}).values():
                if torch.is_tensor(value) and value.shape == p.shape:
                    value.masked_fill_(where, 0)

    # ------------------------------------------------------------ reporting
    @property
    def active(self) -> int:
        return sum(_count(m) for m in self.masks.values())

    @property
    def sparsity(self) -> float:
        return 1.0 - self.active / self.total

    def densities(self) -> dict[str, float]:
        return {n: _count(m) / self.sizes[n] for n, m in self.masks.items()}

    def mask_hash(self) -> str:
        """SHA-1 of every mask in layer order: two runs with equal hashes pruned exactly the same weights."""
        digest = hashlib.sha1()
        for n in self.names:
            digest.update(n.encode())
            digest.update(self.masks[n].flatten().cpu().numpy().tobytes())
        return digest.hexdigest()

    def report(self) -> list[dict]:
        """One row per prunable layer: name, shape, size, active, density (for logs and DataFrames)."""
        return [
            {"name": n, "shape": tuple(self.masks[n].shape), "size": self.sizes[n],
             "active": _count(self.masks[n]), "density": _count(self.masks[n]) / self.sizes[n]}
            for n in self.names
        ]

    # ---------------------------------------------------------------- state
    def state_dict(self) -> dict:
        return {
            "step": self.step,
            "masks": {n: m.cpu() for n, m in self.masks.items()},
            "grad_sum": None if self._grad_sum is None else {n: g.cpu() for n, g in self._grad_sum.items()},
            "grad_count": self._grad_count,
            "generator": self.generator.get_state(),
            "recipe": self.recipe.to_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        if set(state["masks"]) != set(self.names):
            raise ValueError("state: its masks name other layers than this model's prunable weights")
        for n in self.names:
            if state["masks"][n].shape != self.masks[n].shape:
                raise ValueError(f"state: mask {n} has shape {tuple(state['masks'][n].shape)}, expected {tuple(self.masks[n].shape)}")
        if state.get("recipe", self.recipe.to_dict()) != self.recipe.to_dict():
            raise ValueError("state: it was saved by a pruner with another recipe")
        self.step = int(state["step"])
        self.masks = {n: state["masks"][n].to(self.params[n].device) for n in self.names}
        grad_sum = state.get("grad_sum")
        self._grad_sum = None if grad_sum is None else {n: g.to(self.params[n].device) for n, g in grad_sum.items()}
        self._grad_count = int(state.get("grad_count", 0))
        self.generator.set_state(state["generator"])
        self._refresh()


def _count(mask: torch.Tensor) -> int:
    """Active entries; count_nonzero does not copy a bool tensor to int64 as sum() does."""
    return int(torch.count_nonzero(mask))


def _get(d, key):
    return None if d is None else d[key]


def _cat(d, names):
    return None if d is None else torch.cat([d[n] for n in names])
