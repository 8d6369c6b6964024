"""Selection orders as a registry: a criterion registered from outside the package works wherever a built-in
does (select_prune, Pruner, run configs, sweeps' grids, notebook 01's layer view); FGGP's pool scope."""

import math
from pathlib import Path

import pytest
import torch

from fggp.layer_scores import LayerScores, pruned_sets
from fggp.pruning import ORDERS, RECIPES, Pruner, get_recipe, register_order, select_prune
from fggp.pruning.selection import pool_size
from fggp.sweep import expand
from fggp.train import RunConfig

PLUGIN = Path(__file__).parent / "plugins" / "sq_taylor.py"


@pytest.fixture
def plugin():
    return RunConfig(arch="tiny", dataset="digits", recipe="sq_taylor", epochs=1, prune_end_epoch=1,
                     plugins=(str(PLUGIN),))


def oracle_smallest(scores, candidates, k):
    return sorted(candidates, key=lambda i: (scores[i], i))[:k]


def test_a_registered_score_selects_like_its_oracle(plugin):
    gen = torch.Generator().manual_seed(0)
    w, g = torch.rand(300, generator=gen), torch.rand(300, generator=gen)
    active = torch.rand(300, generator=gen) < 0.6
    act = active.nonzero().squeeze(1).tolist()
    got = select_prune(w, g, active, 50, "sq_taylor")
    scores = ((w * g) ** 2).tolist()
    assert sorted(got.nonzero().squeeze(1).tolist()) == sorted(oracle_smallest(scores, act, 50))
    two = select_prune(w, g, active, 50, "grad_then_taylor", rate=0.5)
    pool = oracle_smallest(g.tolist(), act, pool_size(50, len(act), 0.5))
    assert sorted(two.nonzero().squeeze(1).tolist()) == sorted(oracle_smallest((w * g).tolist(), pool, 50))


def test_a_plugin_recipe_runs_through_configs_pruner_grids_and_notebook_01(plugin, tmp_path):
    assert plugin.recipe == "sq_taylor" and plugin.plugins == (str(PLUGIN.resolve()),)
    assert "plugins" not in plugin.identity()
    again = RunConfig.from_dict(plugin.to_dict())
    assert again.run_id == plugin.run_id
    cli = RunConfig.from_strings([f"plugins={PLUGIN}", "recipe=grad_then_taylor", "arch=tiny", "dataset=digits"])
    assert cli.pruning_recipe().order == "grad_then_taylor"
    grid = expand({"grid": {"recipe": ["sq_taylor", "gmp"]},
                   "fixed": {"arch": "tiny", "dataset": "digits", "plugins": [str(PLUGIN)]}})
    assert [c.recipe for c in grid] == ["sq_taylor", "gmp"]

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(20, 30), torch.nn.ReLU(), torch.nn.Linear(30, 5))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    pruner = Pruner(model, opt, "sq_taylor", target_sparsity=0.8, end_step=6, prune_every=2)
    assert pruner.recipe.uses_gradient
    for _ in range(6):
        opt.zero_grad()
        model(torch.randn(4, 20)).sum().backward()
        pruner.before_step()
        opt.step()
        pruner.after_step()
    assert pruner.active == round(0.2 * pruner.total)

    weight, grad = torch.randn(10, 10), torch.randn(10, 10)
    layer = LayerScores("l.weight", weight, grad, weight.abs().flatten(), grad.abs().flatten())
    sets = pruned_sets(layer, 0.3, 0.5, orders=["sq_taylor", "taylor"])
    expected = oracle_smallest(((weight * grad) ** 2).flatten().tolist(), range(100), 30)
    assert sorted(sets["sq_taylor"].nonzero().squeeze(1).tolist()) == sorted(expected)


def test_register_order_refuses_bad_definitions():
    with pytest.raises(ValueError, match="^order name: 'magnitude' is already registered"):
        register_order("magnitude", lambda w, g: w)
    with pytest.raises(ValueError, match="give either score=, or both pool= and then="):
        register_order("half_defined", pool=lambda w, g: g)
    with pytest.raises(ValueError, match="^order: 'nope' is not one of"):
        get_recipe("gmp", order="nope")
    assert "half_defined" not in ORDERS


def test_plugins_that_do_not_exist_are_one_line_errors():
    with pytest.raises(ValueError, match="^plugins: 'missing_file.py' is not a file"):
        RunConfig(plugins=("missing_file.py",))
    with pytest.raises(ValueError, match="^plugins: cannot import 'no_such_module_xyz'"):
        RunConfig(plugins=("no_such_module_xyz",))


def test_layerwise_pool_takes_the_same_fraction_of_every_layer():
    """With pool_scope=layerwise, a global FGGP step pools ceil(k / rate) weights split over the layers in
    proportion to their active counts (smallest |g| in each), then removes the k smallest |w| of the union."""
    torch.manual_seed(3)
    model = torch.nn.Sequential(torch.nn.Linear(40, 50), torch.nn.ReLU(), torch.nn.Linear(50, 10))
    with torch.no_grad():
        model[0].weight.mul_(0.1)  # gradients of very different size per layer: a global pool would favour one
    x, y = torch.randn(16, 40), torch.randint(0, 10, (16,))
    results = {}
    for scope in ("global", "layerwise"):
        m = torch.nn.Sequential(torch.nn.Linear(40, 50), torch.nn.ReLU(), torch.nn.Linear(50, 10))
        m.load_state_dict(model.state_dict())
        pruner = Pruner(m, None, "fggp", pool_scope=scope, schedule="one_shot", target_sparsity=0.2, end_step=1)
        torch.nn.functional.cross_entropy(m(x), y).backward()
        w = {n: p.detach().abs().flatten() for n, p in pruner.params.items()}
        g = {n: p.grad.abs().flatten() for n, p in pruner.params.items()}
        pruner.before_step()
        pruner.after_step()
        results[scope] = {n: (~pruner.masks[n].flatten()).nonzero().squeeze(1).tolist() for n in pruner.names}
    names = list(w)
    sizes = {n: w[n].numel() for n in names}
    k = round(0.2 * sum(sizes.values()))
    m_total = math.ceil(k / 0.5)
    shares = {n: m_total * sizes[n] // sum(sizes.values()) for n in names}
    assert sum(shares.values()) == m_total  # 1000 * 2000/2500 and 1000 * 500/2500: exact here
    pool = [(n, i) for n in names for i in oracle_smallest(g[n].tolist(), range(sizes[n]), shares[n])]
    chosen = sorted(pool, key=lambda e: (w[e[0]][e[1]].item(), names.index(e[0]) * 10**6 + e[1]))[:k]
    expected = {n: sorted(i for (m, i) in chosen if m == n) for n in names}
    assert {n: sorted(v) for n, v in results["layerwise"].items()} == expected
    assert results["layerwise"] != results["global"]
    assert get_recipe("fggp").resolved_pool_scope == "global"
    with pytest.raises(ValueError, match="^pool_scope: 'global' needs scope 'global'"):
        get_recipe("fggp", scope="layerwise", pool_scope="global")


def test_fggp_with_granet_regrowth_is_registered():
    r = RECIPES["fggp_granet"]
    assert (r.order, r.rate, r.regrow_fraction) == ("gradient_first", 0.5, 0.5)
