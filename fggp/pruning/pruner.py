"""The object that hooks pruning into any PyTorch training loop.

    pruner = Pruner(model, optimizer, "fggp", target_sparsity=0.9, end_step=40_000, prune_every=1000)
    loss.backward(); pruner.before_step()    # record |grad|, zero the gradients of pruned weights
    optimizer.step(); pruner.after_step()    # re-apply masks to weights and momentum; prune when due

Steps are counted from 1 (the t-th completed optimizer step). A pruning step uses the gradient of its
own minibatch (or the mean |grad| over the recipe's ``grad_window`` minibatches ending there) and the
weights after that step's update, as GraNet's ``Masking`` does.

Under DistributedDataParallel, pass the wrapped model or the bare one: mask names never carry the
wrapper's ``module.`` prefix, and every mask update is broadcast from rank 0 so all ranks prune alike.
"""

from __future__ import annotations

import hashlib
from contextlib import contextmanager

import torch
from torch import nn

from .. import faults
from .distribution import DISTRIBUTIONS, counts_from_densities
from .floors import check_feasible, floor_counts, minimum_threshold
from .masks import apply_masks, output_counts, prunable_parameters, unwrap
from .recipes import Recipe, get_recipe
from .regrowth import drop_and_regrow
from .safety import CollapseWatch, broadcast_from_rank0, coverage_warning
from .schedules import SparsitySchedule, annealed_rate, cosine_decay
from .pattern import check_layers, group_counts, pattern_target, pool_mask_nm, removable, select_nm
from .selection import NonFiniteScores, _many, get_order, pool_mask, pool_size, select_in_pool, select_prune


class Pruner:
    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer | None = None,
        recipe: str | Recipe = "fggp",
        *,
        target_sparsity: float | None = None,
        end_step: int,
        initial_sparsity: float = 0.0,
        start_step: int = 0,
        prune_every: int = 1000,
        total_steps: int | None = None,
        seed: int = 0,
        include=None,
        exclude=(),
        log=print,
        **recipe_overrides,
    ):
        """``include`` / ``exclude``: glob patterns over parameter names (see ``prunable_parameters``);
        ``log``: where the one-line summary of what is pruned goes (None: nowhere; also ``self.summary``).
        ``target_sparsity`` may be left out only with a recipe ``pattern`` (N:M), which fixes it at 1 - N/M."""
        self.recipe = get_recipe(recipe, **recipe_overrides)
        self.pattern = self.recipe.nm  # (N, M) or None
        if self.pattern is not None:
            target_sparsity = pattern_target(self.pattern, target_sparsity, initial_sparsity)
        elif target_sparsity is None:
            raise ValueError("target_sparsity: missing; give a float in [0, 1) (only a recipe with pattern= "
                             "fixes it)")
        self.optimizer = optimizer
        model = unwrap(model)
        self.params = prunable_parameters(model, exclude, include=include)
        if self.pattern is not None:
            check_layers({n: tuple(p.shape) for n, p in self.params.items()}, self.pattern)
        self.names = list(self.params)
        self.sizes = {n: p.numel() for n, p in self.params.items()}
        self.total = sum(self.sizes.values())
        self.outputs = output_counts(model, self.params)
        self.model_total = sum(p.numel() for p in model.parameters())  # parameters() counts a shared one once
        self.schedule = SparsitySchedule(
            initial=initial_sparsity, final=target_sparsity, start=start_step, end=end_step,
            every=prune_every, kind=self.recipe.schedule, power=self.recipe.power, progress=self.recipe.progress,
        )
        self.total_steps = total_steps if total_steps is not None else end_step
        self.pruning_steps = self.schedule.pruning_steps()
        self.floors = floor_counts(self.sizes, self.recipe.min_keep)
        self.initial_counts = initial_counts(self.sizes, {n: tuple(p.shape) for n, p in self.params.items()},
                                             self.recipe, self.schedule.initial)
        if self.recipe.prunes:
            check_feasible(self.sizes, self.floors, self.schedule.final, self.initial_counts)

        self.step = 0
        self.generator = torch.Generator().manual_seed(seed)
        self._grad_sum: dict[str, torch.Tensor] | None = None
        self._grad_count = 0
        self._in_step = False  # between before_step() and after_step()
        self._collapse = CollapseWatch(self.outputs, {n: tuple(p.shape) for n, p in self.params.items()})
        self.masks = self._initial_masks()
        self._refresh()
        self.summary = self._summary()
        if log is not None:
            log(self.summary)
        if self.recipe.prunes:
            coverage_warning(self.total, self.model_total, self.schedule.final)

    def _summary(self) -> str:
        """One line: how many tensors and parameters are pruned, and what the target means for the model."""
        share = self.total / self.model_total if self.model_total else 1.0
        what = (f"{len(self.names)} tensors, {self.total:,} of {self.model_total:,} model parameters "
                f"({share:.1%})")
        if not self.recipe.prunes:
            return f"pruner: {what}; the recipe prunes nothing"
        target = self.schedule.final
        nm = f" ({self.recipe.pattern}: {self.pattern[0]} of every {self.pattern[1]} weights)" if self.pattern else ""
        return f"pruner: {what}; target {target * 100:.4g}% of them{nm} = {target * share:.1%} of the model"

    # ----------------------------------------------------------------- set-up
    def _initial_masks(self) -> dict[str, torch.Tensor]:
        """Dense, or a random mask per layer at the initial sparsity (ERK or uniform), exact in total."""
        masks = {n: torch.ones_like(p, dtype=torch.bool) for n, p in self.params.items()}
        if not self.recipe.prunes or self.schedule.initial == 0:
            return masks
        counts = self.initial_counts
        for n, mask in masks.items():
            flat = torch.zeros(self.sizes[n], dtype=torch.bool)
            flat[torch.randperm(self.sizes[n], generator=self.generator)[: counts[n]]] = True
            masks[n] = flat.view_as(mask).to(mask.device)
        return dict(zip(self.names, broadcast_from_rank0([masks[n] for n in self.names])))

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
        if self._in_step:
            raise RuntimeError(
                f"before_step() was called twice without after_step() (after step {self.step}): call "
                "pruner.after_step() after optimizer.step(), or the pruner never counts steps and never prunes"
            )
        self._in_step = True
        if not self.recipe.prunes:
            return
        upcoming = self.step + 1
        grads = [self.params[n].grad for n in self.names]
        if self.recipe.uses_gradient:
            due = self._next_due(upcoming)
            if due is not None and due - upcoming < self.recipe.grad_window:
                self._record(grads)
        present = [(g, m) for g, m in zip(grads, self._mults) if g is not None]
        if present:
            torch._foreach_mul_([g for g, _ in present], [m for _, m in present])

    @torch.no_grad()
    def after_step(self) -> None:
        """After ``optimizer.step()``: re-apply masks (weights and momentum), then prune if due."""
        self._in_step = False
        self.step += 1
        if not self.recipe.prunes:
            return
        apply_masks(self._weights, self._mults, self.optimizer)
        if self._is_due(self.step):
            self.prune_now()

    def _is_due(self, step: int) -> bool:
        if self.recipe.regrows:
            return self.schedule.is_update_step(step, self.total_steps)
        return self.schedule.is_pruning_step(step)

    def _next_due(self, step: int) -> int | None:
        if self.recipe.regrows:
            return self.schedule.next_update_step(step, self.total_steps)
        return self.schedule.next_pruning_step(step)

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
        """Prune to the schedule's sparsity at the current step, if it is a pruning step; then, for GraNet's
        recipes, drop and regrow (also after the pruning window)."""
        grads = self._take_grad()
        weights = {n: self.params[n].detach().abs().flatten().float() for n in self.names}
        self._scored = (weights, grads)  # for naming the layers of a non-finite score
        try:
            self._update(weights, grads)
        finally:
            self._scored = None  # a copy of every weight: not kept between steps

    def _update(self, weights, grads) -> None:
        masks = {n: self.masks[n].flatten() for n in self.names}
        r = self.recipe
        if self.schedule.is_pruning_step(self.step):
            index = self.pruning_steps.index(self.step)
            rate = annealed_rate(index, len(self.pruning_steps), r.rate, r.rate_end, r.rate_schedule)
            target = self.schedule.sparsity(self.step)
            expected = self._expected_kept(target, masks)
            if r.scope == "global":
                pruned = self._select_global(target, weights, grads, masks, rate)
            else:
                pruned = self._select_layerwise(target, weights, grads, masks, rate)
            new = {n: masks[n] & ~pruned[n] for n in self.names}
        else:
            expected = sum(_count(masks[n]) for n in self.names)
            new = dict(masks)

        grown = {}
        if r.regrows:
            self._check_regrowth_inputs(weights, grads)
            fraction = cosine_decay(self.step, self.total_steps, r.regrow_fraction, r.regrow_fraction_min)
            for n in self.names:
                after, grown[n] = drop_and_regrow(new[n], weights[n], grads[n], fraction)
                grown[n] &= ~new[n]  # dropped and regrown in the same step: keeps its value and momentum
                new[n] = after

        # every rank takes rank 0's masks (and regrown entries), so DDP replicas stay identical
        synced = broadcast_from_rank0([new[n] for n in self.names] + [grown[n] for n in grown])
        new = dict(zip(self.names, synced[: len(self.names)]))
        grown = dict(zip(list(grown), synced[len(self.names):]))
        kept = {n: _count(new[n]) for n in self.names}
        self._check_kept(kept, expected, new)
        faults.reach("prune")
        self.masks = {n: new[n].view_as(self.masks[n]) for n in self.names}
        self._refresh()
        for n, g in grown.items():
            self._zero_entries(n, g.view_as(self.masks[n]))
        self._collapse.check(kept)

    def _expected_kept(self, target: float, masks) -> int:
        """The active total the schedule asks for after this pruning step (floors move weights between
        layers, never change the total)."""
        active = {n: _count(masks[n]) for n in self.names}
        if self.recipe.scope == "global":
            return min(sum(active.values()), round((1 - target) * self.total))
        return sum(min(active[n], round((1 - target) * self.sizes[n])) for n in self.names)

    def _check_kept(self, kept: dict[str, int], expected: int, new) -> None:
        """A pruning (or regrowth) step that missed its count, or a group of a pattern below N, fails here
        in one line instead of finishing the run at another sparsity than the one reported as the target."""
        total = sum(kept.values())
        if total != expected:
            raise RuntimeError(f"order: {self.recipe.order!r} left {total} weights active after step {self.step}; "
                               f"the schedule asks for exactly {expected} (selection did not honour the count)")
        if self.pattern is not None:
            n_keep, m = self.pattern
            for n in self.names:
                low = int((group_counts(new[n], self.pattern) < n_keep).sum())
                if low:
                    raise RuntimeError(f"pattern: {low} groups of layer {n} keep fewer than {n_keep} of {m} "
                                       f"weights after step {self.step}")

    def _check_regrowth_inputs(self, weights, grads) -> None:
        """Drop-and-regrow ranks |w| and |g|: NaN or inf there would regrow fewer weights than it drops."""
        for n in self.names:
            bad = int(torch.count_nonzero(~torch.isfinite(weights[n])) + torch.count_nonzero(~torch.isfinite(grads[n])))
            if bad:
                raise NonFiniteScores(
                    f"regrow_fraction: layer {n} has {bad} non-finite weights or gradients (NaN or inf) at step "
                    f"{self.step}; drop-and-regrow cannot rank them (training diverged)",
                    order=self.recipe.order, count=bad, layers={n: bad}, diverged=True)

    @contextmanager
    def _scoring(self, names):
        """Name the layers and the cause when a selection over the concatenation of ``names`` meets a
        non-finite score (``positions`` index that concatenation)."""
        try:
            yield
        except NonFiniteScores as err:
            if err.layers is not None or err.positions is None:
                raise
            raise self._nonfinite(err, names) from None

    def _nonfinite(self, err: NonFiniteScores, names) -> NonFiniteScores:
        ends = torch.tensor([self.sizes[n] for n in names]).cumsum(0)
        which = torch.bucketize(err.positions.cpu(), ends, right=True)
        counts = torch.bincount(which, minlength=len(names)).tolist()
        layers = {n: c for n, c in zip(names, counts) if c}
        weights, grads = self._scored
        inputs = sum(int((~torch.isfinite(weights[n])).sum()) for n in names)
        if grads is not None:
            inputs += sum(int((~torch.isfinite(grads[n])).sum()) for n in names)
        listed = ", ".join(f"{c} in {n}" for n, c in list(layers.items())[:4]) + (", ..." if len(layers) > 4 else "")
        cause = (f"the weights or gradients hold {inputs} non-finite values: training diverged" if inputs else
                 "from finite weights and gradients: the order's score is at fault")
        return NonFiniteScores(
            f"order: {err.order!r} gives {_many(err.count, 'non-finite score')} (NaN or inf) at pruning step "
            f"{self.step}: "
            f"{listed}; {cause}; nothing was pruned",
            order=err.order, count=err.count, positions=err.positions, layers=layers, diverged=bool(inputs))

    def _select(self, name, weights, grads, masks, k, rate) -> torch.Tensor:
        with self._scoring([name]):
            return self._choose(weights[name], _get(grads, name), masks[name], k, rate)

    def _choose(self, w, g, active, k, rate) -> torch.Tensor:
        """k weights to prune among ``active`` by the recipe's order; under a pattern, no group below N."""
        if self.pattern is not None:
            return select_nm(w, g, active, k, self.recipe.order, self.pattern, rate, self.generator)
        return select_prune(w, g, active, k, self.recipe.order, rate, self.generator)

    def _select_layerwise(self, target, weights, grads, masks, rate) -> dict[str, torch.Tensor]:
        """Each layer to the target on its own; with floors, layers held at their floor and the others'
        sparsities scaled up by the authors' rule so the total stays that of the layerwise targets."""
        active = {n: _count(masks[n]) for n in self.names}
        pruned0 = {n: max(self.sizes[n] - round((1 - target) * self.sizes[n]), self.sizes[n] - active[n])
                   for n in self.names}
        if any(self.sizes[n] - pruned0[n] < min(self.floors[n], active[n]) for n in self.names):
            pruned0 = self._rescale(pruned0, active, sum(pruned0.values()))
        return {n: self._select(n, weights, grads, masks, pruned0[n] - (self.sizes[n] - active[n]), rate)
                for n in self.names}

    def _select_global(self, target, weights, grads, masks, rate) -> dict[str, torch.Tensor]:
        """One ranking across all layers (by the order's score; a two-step order's pool global or per
        layer); layers that it would push below their floor are then handled by ``floor_rule``."""
        active = {n: _count(masks[n]) for n in self.names}
        keep = round((1 - target) * self.total)
        k = max(sum(active.values()) - keep, 0)
        if self.recipe.floor_rule == "rerank" and any(self.floors.values()):
            return self._select_rerank(k, weights, grads, masks, rate, active)
        parts = self._rank_all(list(self.names), k, weights, grads, masks, rate, active)
        pruned0 = {n: self.sizes[n] - active[n] + _count(parts[n]) for n in self.names}
        if all(self.sizes[n] - pruned0[n] >= min(self.floors[n], active[n]) for n in self.names):
            return parts
        counts = self._rescale(pruned0, active, self.total - keep)
        return {n: self._select(n, weights, grads, masks, counts[n] - (self.sizes[n] - active[n]), rate)
                for n in self.names}

    def _rescale(self, pruned0, active, total) -> dict[str, int]:
        most = {n: self.sizes[n] - min(self.floors[n], active[n]) for n in self.names}
        return minimum_threshold(pruned0, most, total)

    def _rank_all(self, names, k, weights, grads, masks, rate, active) -> dict[str, torch.Tensor]:
        """The k weights one ranking over ``names`` removes, split back per layer."""
        order = get_order(self.recipe.order)
        if order.two_step and self.recipe.resolved_pool_scope == "layerwise":
            # under a pattern the pool is shared by what each layer may still lose, so every share fits
            room = {n: removable(masks[n], self.pattern) for n in names} if self.pattern else \
                {n: active[n] for n in names}
            m = pool_size(k, sum(room.values()), rate)
            shares = _proportional(m, room)
            pools = []
            for n in names:
                with self._scoring([n]):
                    pools.append(pool_mask_nm(weights[n], _get(grads, n), masks[n], shares[n], self.recipe.order,
                                              self.pattern) if self.pattern else
                                 pool_mask(weights[n], _get(grads, n), masks[n], shares[n], self.recipe.order))
            with self._scoring(names):
                chosen = select_in_pool(_cat(weights, names), _cat(grads, names), torch.cat(pools), k,
                                        self.recipe.order)
        else:
            with self._scoring(names):
                chosen = self._choose(_cat(weights, names), _cat(grads, names), _cat(masks, names), k, rate)
        return dict(zip(names, chosen.split([self.sizes[n] for n in names])))

    def _select_rerank(self, k, weights, grads, masks, rate, active) -> dict[str, torch.Tensor]:
        """Floors by re-ranking: a layer at its floor is held there and the rest are ranked again.

        A layer that the unconstrained ranking would push below its floor also reaches the floor in the
        constrained one (freed slots only go to higher scores), so fixing such layers at the floor and
        ranking the rest again is exact for single-score orders.
        """
        caps = {n: active[n] - min(self.floors[n], active[n]) for n in self.names}
        free, held = list(self.names), []
        while True:
            remaining = k - sum(caps[n] for n in held)
            parts = self._rank_all(free, remaining, weights, grads, masks, rate, active)
            over = [n for n in free if _count(parts[n]) > caps[n]]
            if not over:
                break
            held += over
            free = [n for n in free if n not in over]
        for n in held:
            parts[n] = self._select(n, weights, grads, masks, caps[n], rate)
        return parts

    def _zero_entries(self, name: str, where: torch.Tensor) -> None:
        """Weights that come back after being inactive before this step start at 0 with no momentum."""
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
        """One row per prunable layer: name, shape, size, outputs, active, density (for logs and DataFrames);
        a layer with fewer active weights than outputs has outputs cut off from its input."""
        return [
            {"name": n, "shape": tuple(self.masks[n].shape), "size": self.sizes[n], "outputs": self.outputs[n],
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
        self._in_step = False
        self.masks = {n: state["masks"][n].to(self.params[n].device) for n in self.names}
        grad_sum = state.get("grad_sum")
        self._grad_sum = None if grad_sum is None else {n: g.to(self.params[n].device) for n, g in grad_sum.items()}
        self._grad_count = int(state.get("grad_count", 0))
        self.generator.set_state(state["generator"])
        self._refresh()


def initial_counts(sizes: dict[str, int], shapes: dict[str, tuple], recipe: Recipe, initial: float) -> dict[str, int]:
    """Kept weights per layer at the start: all, or the initial density spread by ERK / uniform, exact in
    total (also what the feasibility check of a run config counts, without building masks)."""
    if not recipe.prunes or initial == 0:
        return dict(sizes)
    density = 1.0 - initial
    densities = DISTRIBUTIONS[recipe.initial_distribution](shapes, density)
    return counts_from_densities(sizes, densities, round(density * sum(sizes.values())))


def _proportional(total: int, weights: dict[str, int]) -> dict[str, int]:
    """``total`` split in proportion to ``weights``, in whole numbers that add up exactly (largest remainder)."""
    whole = sum(weights.values())
    if whole == 0:
        return {n: 0 for n in weights}
    shares = {n: total * w // whole for n, w in weights.items()}
    order = sorted(weights, key=lambda n: (-(total * weights[n] % whole), list(weights).index(n)))
    for n in order[: total - sum(shares.values())]:
        shares[n] += 1
    return shares


def _count(mask: torch.Tensor) -> int:
    """Active entries; count_nonzero does not copy a bool tensor to int64 as sum() does."""
    return int(torch.count_nonzero(mask))


def _get(d, key):
    return None if d is None else d[key]


def _cat(d, names):
    return None if d is None else torch.cat([d[n] for n in names])
