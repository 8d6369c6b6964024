"""The Pruner: exact counts per step, floors, regrowth, masked training, one-shot parity, resume."""

import copy

import pytest
import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from fggp.models import build_model
from fggp.pruning import (
    RECIPES, Pruner, Recipe, counts_from_densities, drop_and_regrow, erk_densities, get_recipe, register_recipe,
)
from fggp.pruning.recipes import SCOPES


def small_net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
        nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10),
    )


def train(model, pruner, optimizer, steps, seed=0, check=None, gen=None):
    """SGD on random minibatches drawn from ``gen`` (a fresh one seeded with ``seed`` by default)."""
    gen = gen or torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x = torch.randn(8, 3, 8, 8, generator=gen)
        y = torch.randint(0, 10, (8,), generator=gen)
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        pruner.before_step()
        optimizer.step()
        pruner.after_step()
        if check:
            check(pruner)


def sgd(model):
    return torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4, nesterov=True)


@pytest.mark.parametrize("scope", SCOPES)
@pytest.mark.parametrize("recipe", ["fggp", "gmp", "taylor", "random", "magnitude_first"])
def test_exact_counts_at_every_pruning_step(scope, recipe):
    model = small_net()
    opt = sgd(model)
    pruner = Pruner(model, opt, recipe, scope=scope, target_sparsity=0.9, end_step=30, prune_every=4)
    seen = []

    def check(p):
        if p.step in p.pruning_steps:
            s = p.schedule.sparsity(p.step)
            if scope == "global":
                assert p.active == round((1 - s) * p.total)
            else:
                for row in p.report():
                    assert row["active"] == round((1 - s) * row["size"])
            seen.append(p.step)

    train(model, pruner, opt, 35, check=check)
    assert seen == pruner.pruning_steps and seen[-1] == 30
    assert pruner.active == round(0.1 * pruner.total)
    for name, param in pruner.params.items():
        assert torch.equal(param.detach() != 0, pruner.masks[name]) or not (param.detach()[~pruner.masks[name]] != 0).any()


def test_sparse_start_is_erk_and_exact():
    model = small_net()
    pruner = Pruner(model, None, "fggp", target_sparsity=0.9, initial_sparsity=0.5, end_step=10, prune_every=2)
    assert pruner.active == round(0.5 * pruner.total)
    for name, param in pruner.params.items():
        assert not param.detach()[~pruner.masks[name]].any()
    shapes = {n: tuple(p.shape) for n, p in pruner.params.items()}
    expected = counts_from_densities(pruner.sizes, erk_densities(shapes, 0.5), round(0.5 * pruner.total))
    assert {r["name"]: r["active"] for r in pruner.report()} == expected
    assert len(set(pruner.densities().values())) > 1
    uniform = Pruner(small_net(), None, "gmp_uniform", target_sparsity=0.9, initial_sparsity=0.5, end_step=10)
    assert all(abs(r["density"] - 0.5) <= 1 / r["size"] for r in uniform.report())


def test_min_keep_floor_on_vgg19_at_99_percent():
    model = build_model("vgg19")
    recipe = get_recipe("global_mp", schedule="one_shot")
    pruner = Pruner(model, None, recipe, target_sparsity=0.99, end_step=1)
    unconstrained = Pruner(copy.deepcopy(model), None, "gmp", schedule="one_shot", target_sparsity=0.99, end_step=1)
    for p in (pruner, unconstrained):
        p.before_step()
        p.after_step()
    floor = round(0.0005 * pruner.total + 0.5)
    assert pruner.active == round(0.01 * pruner.total) == unconstrained.active
    rows = {r["name"]: r for r in pruner.report()}
    collapsed = [r["name"] for r in unconstrained.report() if r["active"] < min(floor, r["size"])]
    assert collapsed, "the test needs a layer that plain global magnitude pushes below the floor"
    for name, row in rows.items():
        assert row["active"] >= min(floor, row["size"])
    for name in collapsed:
        assert rows[name]["active"] == min(floor, rows[name]["size"])


def test_min_keep_that_cannot_be_met_is_refused_before_any_change():
    model = small_net()
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(ValueError, match="^min_keep:"):
        Pruner(model, None, "gmp", min_keep=100, initial_sparsity=0.5, target_sparsity=0.95, end_step=10)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])


def test_drop_and_regrow_against_oracle():
    gen = torch.Generator().manual_seed(3)
    for _ in range(20):
        n = 300
        mask = torch.rand(n, generator=gen) < 0.3
        w = torch.randint(0, 6, (n,), generator=gen).float()
        g = torch.randint(0, 6, (n,), generator=gen).float()
        new, grown = drop_and_regrow(mask, w, g, 0.5)
        active = mask.nonzero().squeeze(1).tolist()
        n_drop = -(-len(active) // 2)
        dropped = sorted(active, key=lambda i: (w[i].item(), i))[:n_drop]
        after = set(active) - set(dropped)
        inactive = [i for i in range(n) if i not in after]
        regrown = sorted(inactive, key=lambda i: (-g[i].item(), i))[:n_drop]
        assert int(new.sum()) == int(mask.sum())
        assert sorted(grown.nonzero().squeeze(1).tolist()) == sorted(regrown)
        assert set(new.nonzero().squeeze(1).tolist()) == after | set(regrown)


def test_granet_keeps_layer_counts_and_starts_regrown_weights_at_zero():
    model = small_net()
    opt = sgd(model)
    pruner = Pruner(model, opt, "granet", target_sparsity=0.8, initial_sparsity=0.5, end_step=12, prune_every=4,
                    total_steps=40)
    train(model, pruner, opt, 3)
    weights = {n: p.detach().clone() for n, p in pruner.params.items()}
    before = {n: m.clone() for n, m in pruner.masks.items()}
    target_active = round(0.2 * pruner.total)
    train(model, pruner, opt, 1)  # step 4: prune, then drop and regrow
    assert pruner.step == 4
    changed = False
    for n, p in pruner.params.items():
        new_only = pruner.masks[n] & ~before[n]
        changed |= bool(new_only.any())
        assert not p.detach()[new_only].any()
        assert not opt.state[p]["momentum_buffer"][new_only].any()
    assert changed
    train(model, pruner, opt, 36)
    assert pruner.active == target_active
    del weights


def test_masked_training_keeps_pruned_weights_and_momentum_at_zero():
    model = small_net()
    opt = sgd(model)
    pruner = Pruner(model, opt, "fggp", target_sparsity=0.9, initial_sparsity=0.5, end_step=30, prune_every=5)

    def check(p):
        for n, param in p.params.items():
            off = ~p.masks[n]
            assert not param.detach()[off].any()
            assert not opt.state[param]["momentum_buffer"][off].any()

    train(model, pruner, opt, 50, check=check)
    assert pruner.sparsity == pytest.approx(0.9, abs=1 / pruner.total)


@pytest.mark.parametrize("recipe", ["fggp", "granet"])
def test_channels_last_model_prunes_the_same_weights(recipe):
    """The GPU layout: masks, multipliers and selections follow the logical (NCHW) order, not the strides."""
    pruners = []
    for channels_last in (False, True):
        model = small_net()
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        opt = sgd(model)
        pruner = Pruner(model, opt, recipe, target_sparsity=0.9, initial_sparsity=0.5, end_step=20, prune_every=5)
        train(model, pruner, opt, 25, seed=3)
        pruners.append(pruner)
    contiguous, strided = pruners
    conv = strided.params["0.weight"]
    assert conv.is_contiguous(memory_format=torch.channels_last)
    assert strided.mask_hash() == contiguous.mask_hash()
    for n, param in strided.params.items():
        assert not param.detach()[~strided.masks[n]].any()


def test_one_shot_global_magnitude_equals_torch_global_unstructured():
    model = build_model("resnet20")
    reference = copy.deepcopy(model)
    pruner = Pruner(model, None, "gmp", schedule="one_shot", target_sparsity=0.9, end_step=1)
    pruner.before_step()
    pruner.after_step()
    k = pruner.total - round(0.1 * pruner.total)
    modules = [(m, "weight") for m in reference.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    torch_prune.global_unstructured(modules, pruning_method=torch_prune.L1Unstructured, amount=k)
    theirs = [m.weight_mask.bool() for m, _ in modules]
    ours = list(pruner.masks.values())
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        assert torch.equal(a, b)


def test_grad_window_averages_the_last_minibatches():
    layer = nn.Linear(6, 1, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.ones(1, 6))
    pruner = Pruner(layer, None, "gradient", grad_window=2, schedule="one_shot", target_sparsity=0.5, end_step=3)
    grads = [torch.tensor([[9.0, 9, 9, 9, 9, 9]]), torch.tensor([[0.0, 4, 1, 3, 5, 2]]),
             torch.tensor([[5.0, 0, 4, 2, 0, 3]])]
    for g in grads:
        layer.weight.grad = g.clone()
        pruner.before_step()
        pruner.after_step()
    # mean |g| of the last two minibatches: [2.5, 2, 2.5, 2.5, 2.5, 2.5] -> the 3 smallest: index 1, then 0, 2
    assert pruner.masks["weight"].tolist() == [[False, False, False, True, True, True]]


def test_missing_before_step_is_a_clear_error():
    model = small_net()
    pruner = Pruner(model, None, "fggp", schedule="one_shot", target_sparsity=0.5, end_step=1)
    with pytest.raises(RuntimeError, match="before_step"):
        pruner.after_step()


@pytest.mark.parametrize("recipe", ["fggp", "granet", "random", "fggp_annealed"])
def test_resume_equals_uninterrupted(recipe):
    def fresh():
        model = small_net(seed=1)
        opt = sgd(model)
        pruner = Pruner(model, opt, recipe, grad_window=3, target_sparsity=0.9, initial_sparsity=0.5,
                        end_step=28, prune_every=5, total_steps=40, seed=7)
        return model, opt, pruner

    model, opt, pruner = fresh()
    train(model, pruner, opt, 40)

    model2, opt2, pruner2 = fresh()
    train(model2, pruner2, opt2, 14)  # 14: mid grad window of the step-15 prune
    saved = copy.deepcopy({"m": model2.state_dict(), "o": opt2.state_dict(), "p": pruner2.state_dict()})
    model3, opt3, pruner3 = fresh()
    model3.load_state_dict(saved["m"])
    opt3.load_state_dict(saved["o"])
    pruner3.load_state_dict(saved["p"])
    gen_state = torch.Generator().manual_seed(0)
    for _ in range(14):  # the data stream continues where it was
        torch.randn(8, 3, 8, 8, generator=gen_state), torch.randint(0, 10, (8,), generator=gen_state)
    train(model3, pruner3, opt3, 26, gen=gen_state)
    for n in pruner.names:
        assert torch.equal(pruner.masks[n], pruner3.masks[n])
    for (k, a), b in zip(model.state_dict().items(), model3.state_dict().values()):
        assert torch.equal(a, b), k


def test_dense_recipe_never_prunes():
    model = small_net()
    opt = sgd(model)
    pruner = Pruner(model, opt, "dense", target_sparsity=0.9, end_step=5, prune_every=1)
    train(model, pruner, opt, 10)
    assert pruner.sparsity == 0.0 and pruner.step == 10


def test_registry_and_new_combinations():
    assert {"dense", "fggp", "fggp_annealed", "magnitude_first", "gmp", "gmp_uniform", "granet", "global_mp",
            "gradient", "taylor", "random"} <= set(RECIPES)
    mine = Recipe(order="taylor", scope="layerwise", grad_window=4)
    pruner = Pruner(small_net(), None, mine, target_sparsity=0.5, end_step=4)
    assert pruner.recipe is mine
    register_recipe("my_taylor", mine)
    assert get_recipe("my_taylor") is mine
    del RECIPES["my_taylor"]
    assert get_recipe("fggp", rate=0.25).rate == 0.25 and RECIPES["fggp"].rate == 0.5


@pytest.mark.parametrize(
    "kwargs, field",
    [
        (dict(recipe="obd"), "recipe"),
        (dict(order="largest"), "order"),
        (dict(rate=0.0), "rate"),
        (dict(rate=1.01), "rate"),
        (dict(target_sparsity=1.0), "target_sparsity"),
        (dict(initial_sparsity=-0.5), "initial_sparsity"),
        (dict(initial_sparsity=0.9, target_sparsity=0.5), "target_sparsity"),
        (dict(start_step=100, end_step=50), "end"),
        (dict(scope="blockwise"), "scope"),
        (dict(colour="red"), "recipe field"),
        (dict(exclude=["nope.*"]), "exclude"),
    ],
)
def test_bad_input_names_the_field(kwargs, field):
    args = dict(recipe="fggp", target_sparsity=0.9, end_step=100)
    args.update(kwargs)
    model = small_net()
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(ValueError, match=rf"^{field}:"):
        Pruner(model, None, **args)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_model_without_prunable_layer():
    with pytest.raises(ValueError, match="^model:"):
        Pruner(nn.Sequential(nn.BatchNorm1d(3)), None, "gmp", target_sparsity=0.5, end_step=1)


def test_exclusions_are_never_pruned():
    model = small_net()
    pruner = Pruner(model, None, "gmp", exclude=["9.weight", "0.*"], target_sparsity=0.5, end_step=1)
    assert set(pruner.names) == {"3.weight", "7.weight"}
