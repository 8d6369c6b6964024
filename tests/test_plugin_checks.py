"""Plugins that cannot fake results: orders probed at registration, non-finite scores failing the pruning
step in one line, taken names refused by every registry, kept counts checked after every step."""

import importlib.util
from pathlib import Path

import pytest
import torch
from torch import nn

from fggp.pruning import ORDERS, RECIPES, NonFiniteScores, Pruner, Recipe, register_order, register_recipe, select_prune

PLUGIN = Path(__file__).parent / "plugins" / "sq_taylor.py"


@pytest.fixture
def registered():
    """Names registered by a test, removed again so the registries stay as other tests expect them."""
    names = []
    yield names
    for name in names:
        ORDERS.pop(name, None)
        RECIPES.pop(name, None)


def net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 4))


def one_step(pruner, model, grads=None, poison=None):
    x = torch.randn(5, 6, generator=torch.Generator().manual_seed(0))
    model(x).sum().backward()
    for name, g in (grads or {}).items():
        pruner.params[name].grad = g
    if poison:
        with torch.no_grad():
            poison(model)
    pruner.before_step()
    pruner.after_step()


# --------------------------------------------------------------------------- probes at registration
def boom(w, g):
    raise ZeroDivisionError("no\nway")


@pytest.mark.parametrize(
    "name, kwargs, message",
    [
        ("nan_order", dict(score=lambda w, g: w * float("nan")),
         r"^order: 'nan_order' returns non-finite scores on a probe \(64 weights\): 64 of 64 are NaN or inf$"),
        ("inf_order", dict(score=lambda w, g: 1 / (w > 0.5).float()),
         r"^order: 'inf_order' returns non-finite scores on a probe \(64 weights\): \d+ of 64 are NaN or inf$"),
        ("boom_order", dict(score=boom),
         r"^order: 'boom_order' raises on a probe \(64 weights\): ZeroDivisionError: no way$"),
        ("needs_g", dict(score=lambda w, g: w * g, uses_gradient=False),
         r"^order: 'needs_g' raises on a probe \(64 weights\): TypeError: "),
        ("scalar_order", dict(score=lambda w, g: w.sum()),
         r"^order: 'scalar_order' returns shape \(\) on a probe \(64 weights\); it must return one score per "
         r"weight, shape \(64,\)$"),
        ("list_order", dict(score=lambda w, g: w.tolist()),
         r"^order: 'list_order' returns list on a probe \(64 weights\), not a tensor of 64 scores$"),
        ("bool_order", dict(score=lambda w, g: w > 0.5),
         r"^order: 'bool_order' returns torch.bool scores on a probe \(64 weights\); they must be real numbers$"),
        ("bad_pool", dict(pool=lambda w, g: g.log() * float("inf"), then=lambda w, g: w),
         r"^order: 'bad_pool' \(its pool score\) returns non-finite scores on a probe"),
        ("bad_then", dict(pool=lambda w, g: g, then=lambda w, g: w[:3]),
         r"^order: 'bad_then' \(its then score\) returns shape \(3,\) on a probe"),
    ],
)
def test_register_order_probes_each_score_and_refuses_in_one_line(name, kwargs, message):
    with pytest.raises(ValueError, match=message) as err:
        register_order(name, **kwargs)
    assert "\n" not in str(err.value)
    assert name not in ORDERS


def test_a_sound_order_passes_the_probe(registered):
    registered.append("half_taylor")
    register_order("half_taylor", lambda w, g: 0.5 * w * g)
    assert ORDERS["half_taylor"].uses_gradient


def test_the_test_plugin_still_registers_and_imports_twice():
    for _ in range(2):  # as two RunConfigs in one process would import it
        spec = importlib.util.spec_from_file_location("sq_taylor_plugin", PLUGIN)
        spec.loader.exec_module(importlib.util.module_from_spec(spec))
    assert {"sq_taylor", "grad_then_taylor"} <= set(ORDERS) and {"sq_taylor", "grad_then_taylor"} <= set(RECIPES)


# --------------------------------------------------------------------------- taken names
def test_every_registry_refuses_a_taken_name():
    fggp = RECIPES["fggp"]
    with pytest.raises(ValueError, match="^recipe: 'fggp' is already registered$"):
        register_recipe("fggp", Recipe(order="magnitude"))
    assert RECIPES["fggp"] is fggp
    with pytest.raises(ValueError, match="^order name: 'gradient_first' is already registered$"):
        register_order("gradient_first", lambda w, g: w)
    with pytest.raises(ValueError, match="^recipe: name '' must be a non-empty string$"):
        register_recipe("", Recipe())


# --------------------------------------------------------------------------- non-finite scores at run time
def test_a_score_that_turns_non_finite_fails_the_step_naming_order_layer_and_count(registered):
    """w / g passes the probe (no zero gradient there) but not a layer whose gradient is 0."""
    registered.append("ratio")
    register_order("ratio", lambda w, g: w / g)
    model = net()
    pruner = Pruner(model, None, "gmp", order="ratio", schedule="one_shot", target_sparsity=0.5, end_step=1, log=None)
    before = {n: m.clone() for n, m in pruner.masks.items()}
    with pytest.raises(NonFiniteScores, match=r"^order: 'ratio' gives 32 non-finite scores \(NaN or inf\) at "
                                              r"pruning step 1: 32 in 2.weight; from finite weights and gradients: "
                                              r"the order's score is at fault; nothing was pruned$") as err:
        one_step(pruner, model, grads={"2.weight": torch.zeros(4, 8)})
    assert isinstance(err.value, RuntimeError)
    assert err.value.layers == {"2.weight": 32} and err.value.diverged is False and err.value.order == "ratio"
    assert all(torch.equal(pruner.masks[n], before[n]) for n in pruner.names)


@pytest.mark.parametrize("scope", ["global", "layerwise"])
@pytest.mark.parametrize("recipe", ["gmp", "fggp", "taylor"])
def test_diverged_weights_fail_the_step_instead_of_pruning_less(recipe, scope):
    """Before, NaN scores made the selection take fewer than k and the run ended below its target."""
    model = net()
    pruner = Pruner(model, None, recipe, scope=scope, schedule="one_shot", target_sparsity=0.9, end_step=1, log=None)
    order = pruner.recipe.order
    with pytest.raises(NonFiniteScores, match=rf"^order: '{order}' gives \d+ non-finite scores? \(NaN or inf\) at "
                                              r"pruning step 1: \d+ in 0.weight; the weights or gradients hold \d+ "
                                              r"non-finite values: training diverged; nothing was pruned$") as err:
        one_step(pruner, model, poison=lambda m: m[0].weight[0, :3].fill_(float("nan")))  # after backward
    assert err.value.diverged is True and err.value.layers == {"0.weight": 3}


def test_direct_selection_refuses_non_finite_scores():
    w = torch.tensor([0.1, float("nan"), 0.3, float("inf")])
    with pytest.raises(NonFiniteScores, match=r"^order: 'magnitude' gives 2 non-finite scores \(NaN or inf\) of "
                                              r"4 scored; a pruning step cannot rank them$") as err:
        select_prune(w, None, torch.ones(4, dtype=torch.bool), 2, "magnitude")
    assert err.value.positions.tolist() == [1, 3]


def test_regrowth_with_non_finite_gradients_fails_in_one_line():
    model = net()
    pruner = Pruner(model, None, "granet", target_sparsity=0.5, end_step=2, prune_every=1, total_steps=4, log=None)
    with pytest.raises(NonFiniteScores, match=r"^regrow_fraction: layer 0.weight has 1 non-finite weights or "
                                              r"gradients \(NaN or inf\) at step 1; drop-and-regrow cannot rank"):
        grad = torch.zeros(8, 6)
        grad[2, 2] = float("inf")
        one_step(pruner, model, grads={"0.weight": grad})


# --------------------------------------------------------------------------- kept counts
def test_a_selection_that_misses_its_count_fails_the_step(monkeypatch):
    import fggp.pruning.pruner as pruner_module

    def prunes_one_too_few(w, g, active, k, order, rate=1.0, generator=None):
        out = select_prune(w, g, active, k, order, rate, generator)
        out[out.nonzero()[0]] = False
        return out

    monkeypatch.setattr(pruner_module, "select_prune", prunes_one_too_few)
    model = net()
    pruner = Pruner(model, None, "gmp", schedule="one_shot", target_sparsity=0.5, end_step=1, log=None)
    with pytest.raises(RuntimeError, match=r"^order: 'magnitude' left 41 weights active after step 1; the "
                                           r"schedule asks for exactly 40 \(selection did not honour the count\)$"):
        one_step(pruner, model)
    assert pruner.active == pruner.total  # nothing committed


def test_counts_hold_at_every_step_of_an_ordinary_run():
    model = net()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    pruner = Pruner(model, opt, "fggp_granet", target_sparsity=0.6, end_step=8, prune_every=2, total_steps=12,
                    log=None)
    gen = torch.Generator().manual_seed(1)
    for _ in range(12):  # every pruning and regrowth step passes the count check
        opt.zero_grad()
        model(torch.randn(5, 6, generator=gen)).sum().backward()
        pruner.before_step()
        opt.step()
        pruner.after_step()
    assert pruner.active == round(0.4 * pruner.total)


def test_a_plugin_file_with_a_faulty_order_fails_the_config_before_any_data_loads(tmp_path):
    from fggp.train import RunConfig

    plugin = tmp_path / "faulty_criteria.py"
    plugin.write_text("from fggp.pruning import register_order\n"
                      "register_order('nan_from_plugin', lambda w, g: w / 0 - w / 0)\n")
    message = (r"^plugins: .*faulty_criteria.py' failed to import \(.*order: 'nan_from_plugin' returns "
               r"non-finite scores on a probe \(64 weights\)")
    with pytest.raises(ValueError, match=message) as err:
        RunConfig(arch="tiny", dataset="digits", plugins=(str(plugin),))
    assert "\n" not in str(err.value) and "nan_from_plugin" not in ORDERS


def test_non_finite_positions_are_flat_indices_of_the_caller(registered):
    """A second score that fails inside the pool of a partly active layer still names the right weights."""
    registered.append("then_nan_above")
    register_order("then_nan_above", pool=lambda w, g: g, then=lambda w, g: torch.where(w > 2, w * float("nan"), w))
    w = torch.tensor([3.0, 1.0, 3.0, 0.5, 3.0, 1.5, 0.1, 3.0])
    g = torch.tensor([0.0, 0.1, 0.2, 0.3, 9.0, 0.4, 0.5, 0.6])
    active = torch.tensor([True, True, False, True, True, True, True, True])
    with pytest.raises(NonFiniteScores) as err:
        select_prune(w, g, active, 3, "then_nan_above", rate=0.5)  # pool: the 6 smallest |g| of 7 active
    assert sorted(err.value.positions.tolist()) == [0, 7]
    from fggp.pruning import select_nm
    with pytest.raises(NonFiniteScores) as err:
        select_nm(w, g, active, 3, "then_nan_above", "2:4", rate=1.0)  # pool: greedy on |g| -> 0, 5, 6
    assert err.value.positions.tolist() == [0]
