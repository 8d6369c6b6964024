"""Measure how far the kit's baselines are from their reference code on each point of docs/pruning.md's
"differences from the reference code" table, and write the numbers to benchmarks/results/reference_gaps.json.

    python benchmarks/reference_gaps.py            # about a minute on 2 CPU cores

Models at initialization with one minibatch of seeded random images (the gaps are properties of the
algorithms, not of training); the paper's step numbers (391 steps per epoch, pruning every 1000 steps
until epoch 80 of 160).
"""

from __future__ import annotations

import argparse
import copy
import itertools
import json
from pathlib import Path

import torch
from torch import nn

from fggp.models import build_model
from fggp.pruning import Infeasible, Pruner, SparsitySchedule, cosine_decay, drop_and_regrow, get_recipe
from fggp.sweep import load_grid
from fggp.train import RunConfig
from fggp.train.checkpoint import write_json

STEPS_PER_EPOCH, EVERY = 391, 1000
END, TOTAL = 80 * STEPS_PER_EPOCH, 160 * STEPS_PER_EPOCH


def gradients(model: nn.Module, seed: int = 0) -> None:
    gen = torch.Generator().manual_seed(seed)
    x, y = torch.randn(64, 3, 32, 32, generator=gen), torch.randint(0, 10, (64,), generator=gen)
    model.zero_grad()
    nn.functional.cross_entropy(model(x), y).backward()


def prune_once(model, recipe, target, **kw) -> Pruner:
    pruner = Pruner(model, None, recipe, target_sparsity=target, schedule="one_shot", end_step=1, **kw)
    pruner.before_step()
    pruner.after_step()
    return pruner


def same_step_regrowth() -> dict:
    """GraNet's first update from a dense ResNet-20: regrown weights reset to 0, all regrown vs only those
    inactive before the step (the reference)."""
    torch.manual_seed(0)
    model = build_model("resnet20")
    gradients(model)
    schedule = SparsitySchedule(initial=0.0, final=0.9, start=0, end=END, every=EVERY)
    first = schedule.pruning_steps()[0]
    target = schedule.sparsity(first)
    pruner = prune_once(copy.deepcopy(model), "gmp", target)
    fraction = cosine_decay(first, TOTAL, 0.5, 0.005)
    all_regrown = reset = active = 0
    params = dict(model.named_parameters())
    for n in pruner.names:
        mask = pruner.masks[n].flatten()
        _, grown = drop_and_regrow(mask, params[n].detach().abs().flatten(), params[n].grad.abs().flatten(), fraction)
        all_regrown += int(grown.sum())
        reset += int((grown & ~mask).sum())
        active += int(mask.sum())
    return {"active_weights": active, "regrown": all_regrown, "reset_to_zero_if_all_regrown_reset": all_regrown,
            "reset_to_zero_reference": reset, "fraction": fraction, "step": first}


def regrowth_after_window() -> dict:
    schedule = SparsitySchedule(initial=0.0, final=0.9, start=0, end=END, every=EVERY)
    after = [t for t in schedule.update_steps(TOTAL) if t > END]
    return {"rounds_after_window": len(after), "first_fraction": cosine_decay(after[0], TOTAL, 0.5, 0.005),
            "last_fraction": cosine_decay(after[-1], TOTAL, 0.5, 0.005)}


def drop_floor() -> dict:
    return {"step": 40_000, "total": 64_000, "with_floor": cosine_decay(40_000, 64_000, 0.5, 0.005),
            "without_floor": cosine_decay(40_000, 64_000, 0.5)}


def min_threshold_vs_rerank(target: float = 0.95) -> dict:
    torch.manual_seed(0)
    model = build_model("resnet50")
    rescale = prune_once(copy.deepcopy(model), get_recipe("global_mp"), target)
    rerank = prune_once(copy.deepcopy(model), get_recipe("global_mp", floor_rule="rerank"), target)
    a, b = ({r["name"]: r["active"] for r in p.report()} for p in (rescale, rerank))
    moved = sum(abs(a[n] - b[n]) for n in a) // 2
    return {"arch": "resnet50", "target": target, "kept": rescale.active, "kept_in_other_layers": moved,
            "share": moved / rescale.active}


def infeasible_cells() -> dict:
    """Runs of configs/paper.yaml whose floors exceed the budget (the sweep reports them not applicable)."""
    spec = load_grid(Path(__file__).resolve().parent.parent / "configs" / "paper.yaml")
    grid, cells = spec["grid"], []
    for arch, recipe, target, initial in itertools.product(grid["arch"], grid["recipe"], grid["target_sparsity"],
                                                           grid["initial_sparsity"]):
        try:
            RunConfig(arch=arch, recipe=recipe, target_sparsity=target, initial_sparsity=initial)
        except Infeasible:
            cells.append(f"{arch} {recipe} {target} from {initial}")
    return {"cells": cells, "runs": len(cells) * len(grid["seed"])}


def progress_gap() -> dict:
    exact = SparsitySchedule(initial=0.0, final=0.9, start=0, end=END, every=EVERY)
    granet = SparsitySchedule(initial=0.0, final=0.9, start=0, end=END, every=EVERY, progress="pruning_steps")
    steps = sorted(set(exact.pruning_steps()) | set(granet.pruning_steps()))
    gap = max(abs(exact.sparsity(t) - granet.sparsity(t)) for t in steps)
    return {"exact_steps": len(exact.pruning_steps()), "granet_steps": len(granet.pruning_steps()),
            "granet_final": granet.sparsity(TOTAL), "max_gap": gap, "vgg19_weights_at_max_gap": round(gap * 20_024_000)}


def pool_scope(target: float = 0.1) -> dict:
    """VGG-19 at init, one FGGP step from dense: where the removals come from with a global pool (raw |g|
    over all layers), a per-layer pool, and plain magnitude."""
    torch.manual_seed(0)
    model = build_model("vgg19")
    gradients(model)
    out = {}
    for label, recipe, kw in (("fggp_global_pool", "fggp", {}), ("fggp_layer_pool", "fggp", {"pool_scope": "layerwise"}),
                              ("magnitude", "gmp", {})):
        m = copy.deepcopy(model)
        for p, q in zip(m.parameters(), model.parameters()):
            p.grad = q.grad.clone()
        pruner = prune_once(m, recipe, target, **kw)
        removed = {r["name"]: r["size"] - r["active"] for r in pruner.report()}
        convs = [n for n in pruner.names if n.startswith("features")]
        total = sum(removed.values())
        out[label] = {"share_from_last_three_convs": sum(removed[n] for n in convs[-3:]) / total,
                      "first_conv_density": 1 - removed[convs[0]] / pruner.sizes[convs[0]],
                      "last_conv_density": 1 - removed[convs[-1]] / pruner.sizes[convs[-1]]}
    return {"target": target, **out}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "reference_gaps.json"))
    args = parser.parse_args(argv)
    torch.set_grad_enabled(True)
    result = {"same_step_regrowth": same_step_regrowth(), "regrowth_after_window": regrowth_after_window(),
              "drop_fraction_floor": drop_floor(), "min_threshold_vs_rerank": min_threshold_vs_rerank(),
              "infeasible_cells": infeasible_cells(), "schedule_progress": progress_gap(), "pool_scope": pool_scope(),
              "torch": torch.__version__}
    write_json(Path(args.out), result)
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
