"""The baselines against the algorithms of their authors' code, on small cases computed by hand.

GraNet: Shiweiliuiiiiiii/GraNet, CIFAR/sparselearning/core.py (Masking.step, pruning, truncate_weights,
CosineDecay). Global MP with Minimum Threshold: manasgupta-1/GlobalMP, "Global MP with MT/prune_withMT.py".
"""

import copy
import math
import random

import pytest
import torch
from torch import nn

from fggp.pruning import (
    Infeasible, Pruner, SparsitySchedule, cosine_decay, floor_counts, get_recipe, minimum_threshold,
)
from fggp.train import RunConfig


# ------------------------------------------------------------------------------------------ GraNet

def one_layer(values):
    model = nn.Linear(len(values), 1, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([values]))
    return model


def step_with_grad(model, pruner, opt, grad):
    opt.zero_grad()
    model.weight.grad = torch.tensor([grad])
    pruner.before_step()
    opt.step()
    pruner.after_step()


def test_granet_same_step_regrowth_keeps_value_and_momentum_new_growth_starts_at_zero():
    """Step 1 prunes the 2 smallest of 8 (target 0.25), then drops ceil(0.375 * 6) = 3 (0.3, 0.4, 0.5) and
    regrows 3 by largest |g| among the 5 inactive: index 0 (pruned by this step's schedule: back at 0),
    2 and 3 (dropped in this step: keep their value and momentum, as GraNet's mask multiply leaves them)."""
    model = one_layer([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8])
    opt = torch.optim.SGD(model.parameters(), lr=0.0, momentum=0.9)
    recipe = get_recipe("granet", schedule="one_shot", regrow_fraction_min=0.0)
    pruner = Pruner(model, opt, recipe, target_sparsity=0.25, end_step=1, prune_every=1, total_steps=3)
    grad = [9.0, 0.0, 8.0, 7.0, 0.0, 1.0, 1.0, 1.0]
    assert cosine_decay(1, 3, 0.5) == pytest.approx(0.375)
    step_with_grad(model, pruner, opt, grad)
    w = model.weight.detach()[0]
    momentum = opt.state[model.weight]["momentum_buffer"][0]
    assert pruner.masks["weight"][0].tolist() == [True, False, True, True, False, True, True, True]
    assert w.tolist() == pytest.approx([0.0, 0.0, 0.3, 0.4, 0.0, 0.6, 0.7, 0.8])
    assert momentum.tolist() == pytest.approx([0.0, 0.0, 8.0, 7.0, 0.0, 1.0, 1.0, 1.0])


def test_granet_regrows_every_prune_every_steps_until_training_ends():
    schedule = SparsitySchedule(initial=0.0, final=0.9, start=0, end=10, every=4)
    assert schedule.pruning_steps() == [4, 8, 10]
    assert schedule.update_steps(total=25) == [4, 8, 10, 12, 16, 20, 24]
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    pruner = Pruner(model, opt, "granet", target_sparsity=0.8, end_step=8, prune_every=4, total_steps=22)
    gen = torch.Generator().manual_seed(1)
    changed = []
    for _ in range(22):
        before = {n: m.clone() for n, m in pruner.masks.items()}
        opt.zero_grad()
        nn.functional.cross_entropy(model(torch.randn(8, 16, generator=gen)), torch.randint(0, 4, (8,), generator=gen)).backward()
        pruner.before_step()
        opt.step()
        pruner.after_step()
        if any(not torch.equal(before[n], pruner.masks[n]) for n in before):
            changed.append(pruner.step)
        if pruner.step > 8:
            assert pruner.active == round(0.2 * pruner.total)
    assert changed == [4, 8, 12, 16, 20]


def test_granet_drop_fraction_has_a_floor():
    assert cosine_decay(40_000, 64_000, 0.5, 0.005) == pytest.approx(0.005 + 0.495 * (1 + math.cos(math.pi * 0.625)) / 2)
    assert cosine_decay(40_000, 64_000, 0.5, 0.005) == pytest.approx(0.1578, abs=1e-4)
    assert cosine_decay(40_000, 64_000, 0.5) == pytest.approx(0.1543, abs=1e-4)
    assert min(cosine_decay(t, 1000, 0.5, 0.005) for t in range(0, 1200, 7)) >= 0.005
    assert cosine_decay(1000, 1000, 0.5, 0.005) == pytest.approx(0.005)
    assert get_recipe("granet").regrow_fraction_min == 0.005


def test_pruning_step_progress_is_granets_on_the_paper_steps():
    """80 epochs x 391 steps, every 1000: GraNet prunes at 1000..30000 (30 steps), last at 0.9 (1 - (1/31)^3)."""
    granet = SparsitySchedule(initial=0.0, final=0.9, start=0, end=80 * 391, every=1000, progress="pruning_steps")
    assert granet.pruning_steps() == list(range(1000, 30_001, 1000))
    assert granet.sparsity(30_000) == pytest.approx(0.9 * (1 - (1 / 31) ** 3))
    assert round(granet.sparsity(30_000), 5) == 0.89997
    assert granet.sparsity(31_280) == granet.sparsity(30_000)
    assert granet.sparsity(5_500) == pytest.approx(0.9 * (1 - (1 - 5 / 31) ** 3))
    exact = SparsitySchedule(initial=0.0, final=0.9, start=0, end=80 * 391, every=1000)
    assert len(exact.pruning_steps()) == 32 and exact.pruning_steps()[-1] == 31_280
    assert exact.sparsity(31_280) == 0.9
    assert max(abs(granet.sparsity(t) - exact.sparsity(t)) for t in granet.pruning_steps()) > 3e-3
    sparse = SparsitySchedule(initial=0.5, final=0.98, start=0, end=80 * 391, every=1000, progress="pruning_steps")
    assert sparse.sparsity(1000) == pytest.approx(0.98 + (0.5 - 0.98) * (1 - 1 / 31) ** 3)
    assert get_recipe("granet_reference").progress == "pruning_steps"
    with pytest.raises(ValueError, match="^progress:"):
        SparsitySchedule(initial=0.0, final=0.9, start=0, end=999, every=1000, progress="pruning_steps")


# ------------------------------------------------------------------- Global MP, Minimum Threshold

def authors_loop(sizes, sparsities, floor, target):
    """Gupta et al.'s clamp-and-rescale as their script describes it, in floats, run until it converges:
    small layers whole, scale to the target, clamp; then scale and clamp again while the total is short."""
    n = sum(sizes)

    def scale_and_clamp(s):
        total = sum(size * sp for size, sp in zip(sizes, s)) / n
        s = [sp * target / total for sp in s]
        return [1 - floor / size if (1 - sp) * size < floor and size > floor else sp for size, sp in zip(sizes, s)]

    s = scale_and_clamp([0.0 if size < floor else sp for size, sp in zip(sizes, sparsities)])
    for _ in range(10_000):
        if sum(size * sp for size, sp in zip(sizes, s)) / n >= target - 1e-13:
            break
        s = scale_and_clamp(s)
    return [size * sp for size, sp in zip(sizes, s)]


def test_minimum_threshold_on_a_worked_four_layer_example():
    """Sizes 1000/100/50/10/60, floor 20, global magnitude would prune 900/90/40/5/39 (1074 in all).
    The 10-weight layer is smaller than the floor: whole. 100 and 50 would keep 10: clamped to 20.
    The rest scales by 964/939; then the 60-weight layer would keep 60 - 40.04 < 20: clamped too, and
    the 1000-weight layer takes 1074 - 80 - 30 - 0 - 40 = 924."""
    sizes = {"a": 1000, "b": 100, "c": 50, "d": 10, "e": 60}
    floors = floor_counts(sizes, 20)
    assert floors == {"a": 20, "b": 20, "c": 20, "d": 10, "e": 20}
    pruned = {"a": 900, "b": 90, "c": 40, "d": 5, "e": 39}
    most = {n: sizes[n] - floors[n] for n in sizes}
    got = minimum_threshold(pruned, most, 1074)
    assert got == {"a": 924, "b": 80, "c": 30, "d": 0, "e": 40}
    loop = authors_loop(list(sizes.values()), [pruned[n] / sizes[n] for n in sizes], 20, 1074 / 1220)
    assert [round(x, 6) for x in loop] == pytest.approx([924, 80, 30, 0, 40], abs=1e-6)


def test_minimum_threshold_is_the_limit_of_the_authors_loop():
    rng = random.Random(4)
    for _ in range(200):
        sizes = [rng.choice([8, 30, 200, 1000, 5000]) for _ in range(rng.randint(2, 7))]
        floor = rng.choice([5, 10, 25, 40])
        pruned = [rng.randint(0, size - 1) if size > floor else 0 for size in sizes]
        total = sum(pruned)
        most = [size - min(floor, size) for size in sizes]
        if sum(most) < total or total == 0:
            continue
        names = [f"l{i}" for i in range(len(sizes))]
        try:
            got = minimum_threshold(dict(zip(names, pruned)), dict(zip(names, most)), total)
        except Infeasible:
            continue
        assert sum(got.values()) == total
        assert all(0 <= got[n] <= m for n, m in zip(names, most))
        loop = authors_loop(sizes, [p / s for p, s in zip(pruned, sizes)], floor, total / sum(sizes))
        assert all(abs(got[n] - x) < 1 + 1e-6 for n, x in zip(names, loop)), (sizes, floor, pruned, got, loop)


def test_global_mp_floor_is_the_authors_int_of_005_percent():
    sizes = {"a": 10_000, "b": 3_000, "c": 7}
    assert floor_counts(sizes, 0.0005) == {"a": 6, "b": 6, "c": 6}  # int(13_007 * 0.05 / 100) = 6
    assert get_recipe("global_mp").floor_rule == "rescale"


def test_global_mp_layers_are_rescaled_not_reranked():
    """On a net whose last layer global magnitude would empty, that layer ends exactly at the floor and
    every other layer keeps the share the authors' rescale gives it, which differs from a re-rank."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 64),
                          nn.ReLU(), nn.Linear(64, 10))
    with torch.no_grad():  # different weight distributions per layer, so a re-rank and a rescale part ways
        model[0].weight.normal_()
        model[2].weight.uniform_(-2, 2)
        model[4].weight.normal_(0, 0.7)
        model[6].weight.normal_(0, 0.05)
    pruners = {
        "gmp": Pruner(copy.deepcopy(model), None, "gmp", schedule="one_shot", target_sparsity=0.95, end_step=1),
        "rescale": Pruner(copy.deepcopy(model), None, "global_mp_oneshot", min_keep=40, target_sparsity=0.95, end_step=1),
        "rerank": Pruner(copy.deepcopy(model), None, "global_mp_oneshot", min_keep=40, floor_rule="rerank",
                         target_sparsity=0.95, end_step=1),
    }
    for p in pruners.values():
        p.before_step()
        p.after_step()
    sizes = pruners["gmp"].sizes
    pruned = {name: {n: sizes[n] - r["active"] for n, r in zip(sizes, p.report())} for name, p in pruners.items()}
    assert pruned["gmp"]["6.weight"] > sizes["6.weight"] - 40, "the example needs a layer below the floor"
    expected = minimum_threshold(pruned["gmp"], {n: sizes[n] - 40 for n in sizes}, sum(pruned["gmp"].values()))
    assert pruned["rescale"] == expected
    assert pruned["rescale"]["6.weight"] == pruned["rerank"]["6.weight"] == sizes["6.weight"] - 40
    assert sum(pruned["rescale"].values()) == sum(pruned["rerank"].values()) == sum(pruned["gmp"].values())
    assert pruned["rescale"] != pruned["rerank"]


def test_infeasible_floors_are_refused_in_one_line_before_any_data():
    with pytest.raises(Infeasible, match=r"^min_keep: .*highest reachable target is 0\.97") as err:
        RunConfig(arch="resnet50", recipe="global_mp", target_sparsity=0.98, data_dir="/nonexistent")
    assert "\n" not in str(err.value)
    RunConfig(arch="resnet50", recipe="global_mp", target_sparsity=0.95)
    with pytest.raises(Infeasible, match="^min_keep:"):  # layerwise floors are checked like global ones
        Pruner(one_layer([1.0] * 10), None, "gmp_uniform", min_keep=5, target_sparsity=0.9, end_step=1)


def test_layerwise_floors_rescale_to_the_exact_total():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(100, 50), nn.ReLU(), nn.Linear(50, 4))
    pruner = Pruner(model, None, "gmp_uniform", min_keep=30, schedule="one_shot", target_sparsity=0.9, end_step=1)
    pruner.before_step()
    pruner.after_step()
    per_layer = {r["name"]: r["active"] for r in pruner.report()}
    assert per_layer["2.weight"] == 30  # 200 weights at 10% would keep 20: held at the floor
    assert pruner.active == round(0.1 * 5000) + round(0.1 * 200)  # what the layerwise targets keep in all


def test_paper_grid_lists_its_infeasible_cells_as_not_applicable():
    from pathlib import Path

    from fggp.sweep import NotApplicable, expand, load_grid

    points = expand(load_grid(Path(__file__).resolve().parent.parent / "configs" / "paper.yaml"))
    na = [p for p in points if isinstance(p, NotApplicable)]
    assert len(na) == 6 and len(points) == 222
    assert {(p.config["arch"], p.config["recipe"], p.config["target_sparsity"]) for p in na} == {("resnet50", "global_mp", 0.98)}
    assert all(p.reason.startswith("min_keep: the per-layer floors keep 615940 weights") for p in na)
