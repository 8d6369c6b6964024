"""N:M sparsity as a target (recipe field ``pattern``): a plain-Python greedy oracle per group for every
order, exact N of M at the end of gradual runs, exact totals, resume, and one-line refusals."""

import copy
import math
import zlib
from fractions import Fraction

import pytest
import torch
from torch import nn

from fggp.pruning import ORDERS, RECIPES, Pruner, Recipe, get_recipe, group_counts, select_nm
from fggp.pruning.pattern import parse_pattern, pattern_sparsity

PATTERNS = ["2:4", "1:4", "4:8"]
BUILTIN = ["magnitude", "gradient", "gradient_first", "magnitude_first", "taylor", "random"]


# --------------------------------------------------------------------------- the oracle, in plain Python
def first_score(order, w, g):
    """The score the greedy pass ranks by (a two-step order's pool score), written out for the built-ins."""
    if order == "magnitude" or order == "magnitude_first":
        return list(w)
    if order == "gradient" or order == "gradient_first":
        return list(g)
    if order == "taylor":
        return [a * b for a, b in zip(w, g)]
    spec = ORDERS[order]  # a registered plugin: its own function, still on the active entries only
    fn = spec.pool if spec.two_step else spec.score
    return fn(torch.tensor(w), None if g is None else torch.tensor(g)).tolist()


def second_score(order, w, g):
    if order == "gradient_first":
        return list(w)
    if order == "magnitude_first":
        return list(g)
    return ORDERS[order].then(torch.tensor(w), None if g is None else torch.tensor(g)).tolist()


def greedy(scores, candidates, k, counts, n, m):
    """Take the candidates in order of (score, index); one goes while its group keeps more than n."""
    counts = dict(counts)
    taken = []
    for i in sorted(candidates, key=lambda i: (scores[i], i)):
        if len(taken) == k:
            break
        if counts[i // m] > n:
            taken.append(i)
            counts[i // m] -= 1
    return taken


def oracle_nm(w, g, active, k, order, n, m, rate, seed):
    w, g, active = w.tolist(), None if g is None else g.tolist(), active.tolist()
    act = [i for i, a in enumerate(active) if a]
    counts = {}
    for i in act:
        counts[i // m] = counts.get(i // m, 0) + 1
    spec = ORDERS[order]
    if spec.random:  # documented: the j-th active weight's priority is randperm(n_active)[j]
        perm = torch.randperm(len(act), generator=torch.Generator().manual_seed(seed)).tolist()
        first = dict(zip(act, perm))
    else:
        values = first_score(order, [w[i] for i in act], None if g is None else [g[i] for i in act])
        first = dict(zip(act, values))
    if not spec.two_step:
        chosen = greedy(first, act, k, counts, n, m)
    else:
        room = sum(max(c - n, 0) for c in counts.values())
        size = min(room, math.ceil(Fraction(k) / Fraction(repr(float(rate)))))
        pool = greedy(first, act, size, counts, n, m)
        values = second_score(order, [w[i] for i in pool], None if g is None else [g[i] for i in pool])
        second = dict(zip(pool, values))
        chosen = sorted(pool, key=lambda i: (second[i], i))[:k]
    out = torch.zeros(len(w), dtype=torch.bool)
    out[chosen] = True
    return out


def tied(size, levels, gen):
    """A few levels only, so ties inside and across groups are everywhere (products exact in float32)."""
    return torch.randint(0, levels, (size,), generator=gen).float() / 4


def room(active, n, m):
    return int((active.view(-1, m).sum(1) - n).clamp_min(0).sum())


@pytest.mark.parametrize("pattern", PATTERNS + ["1:2", "3:5"])
@pytest.mark.parametrize("order", BUILTIN)
def test_one_step_matches_the_greedy_oracle_with_ties(order, pattern):
    n, m = parse_pattern(pattern)
    gen = torch.Generator().manual_seed(zlib.crc32(f"{order} {pattern}".encode()))  # same in every process
    for trial in range(10):
        groups = int(torch.randint(1, 30, (1,), generator=gen))
        w, g = tied(groups * m, 5, gen), tied(groups * m, 4, gen)
        active = torch.rand(groups * m, generator=gen) < (1.0 if trial % 3 == 0 else 0.8)  # some groups below N
        most = room(active, n, m)
        for rate in (1.0, 0.5, 0.3) if ORDERS[order].two_step else (1.0,):
            for k in sorted({0, 1 if most else 0, most // 3, most // 2, most}):
                got = select_nm(w, g, active, k, order, pattern, rate, torch.Generator().manual_seed(trial))
                expected = oracle_nm(w, g, active, k, order, n, m, rate, trial)
                assert torch.equal(got, expected), (order, pattern, trial, rate, k)
                assert int(got.sum()) == k and not (got & ~active).any()
                assert (group_counts(active & ~got, pattern) >= torch.minimum(
                    group_counts(active, pattern), torch.tensor(n))).all()


def test_registered_orders_match_the_oracle_too():
    """Whatever ORDERS holds when this runs (plugins included), one step equals the greedy oracle."""
    gen = torch.Generator().manual_seed(11)
    w, g = tied(64, 6, gen), tied(64, 6, gen)
    active = torch.rand(64, generator=gen) < 0.9
    for order in list(ORDERS):
        for pattern in ("2:4", "4:8"):
            n, m = parse_pattern(pattern)
            k = room(active, n, m) // 2
            got = select_nm(w, g, active, k, order, pattern, 0.5, torch.Generator().manual_seed(2))
            assert torch.equal(got, oracle_nm(w, g, active, k, order, n, m, 0.5, 2)), (order, pattern)


def test_ties_go_to_the_lower_flat_index():
    # all scores equal: the first group gives its lowest indices, then the next group, ...
    active = torch.ones(8, dtype=torch.bool)
    got = select_nm(torch.ones(8), None, active, 3, "magnitude", "2:4")
    assert got.tolist() == [True, True, False, False, True, False, False, False]
    # the lowest score overall sits in a group that is already at N: the next one goes instead
    w = torch.tensor([0.0, 0.1, 5.0, 5.0, 0.2, 9.0, 9.0, 9.0])
    active = torch.tensor([True, True, False, False, True, True, True, True])
    assert select_nm(w, None, active, 1, "magnitude", "2:4").tolist() == [False] * 4 + [True] + [False] * 3


@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.parametrize("order", BUILTIN)
def test_direct_calls_to_the_end_leave_exactly_n_of_m(order, pattern):
    """Pruning a layer in steps down to N/M by direct calls: every group ends at exactly N."""
    n, m = parse_pattern(pattern)
    gen = torch.Generator().manual_seed(5)
    active = torch.ones(40 * m, dtype=torch.bool)
    target = n * 40
    for keep in (35 * m, 30 * m, 25 * m + 1, target):
        keep = max(keep, target)
        w, g = torch.rand(40 * m, generator=gen), torch.rand(40 * m, generator=gen)
        k = int(active.sum()) - keep
        active &= ~select_nm(w, g, active, k, order, pattern, 0.5, gen)
        assert int(active.sum()) == keep
        assert (group_counts(active, pattern) >= n).all()
    assert (group_counts(active, pattern) == n).all()


# ------------------------------------------------------------------------------------- gradual runs
def nm_net(seed=0):
    """Rows of 72, 64 and 32 weights: they divide by 4 and by 8."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                         nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 8))


def train(model, pruner, optimizer, steps, gen, check=None):
    for _ in range(steps):
        x, y = torch.randn(6, 8, 6, 6, generator=gen), torch.randint(0, 8, (6,), generator=gen)
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        pruner.before_step()
        optimizer.step()
        pruner.after_step()
        if check:
            check(pruner)


def sgd(model):
    return torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)


def recipe_for(order, pattern, **fields):
    return Recipe(order=order, pattern=pattern, rate=0.5 if ORDERS[order].two_step else 1.0, **fields)


@pytest.mark.parametrize("scope", ["global", "layerwise"])
@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.parametrize("order", sorted(ORDERS))
def test_a_training_run_ends_at_exactly_n_of_m_in_every_group(order, pattern, scope):
    n, m = parse_pattern(pattern)
    model = nm_net()
    opt = sgd(model)
    pruner = Pruner(model, opt, recipe_for(order, pattern, scope=scope), end_step=12, prune_every=3, log=None)
    assert pruner.schedule.final == pattern_sparsity(pattern) == 1 - n / m
    seen = []

    def check(p):
        for name, param in p.params.items():
            counts = group_counts(p.masks[name], pattern)
            assert (counts >= n).all() and (counts <= m).all()
            assert not param.detach()[~p.masks[name]].any()
            assert not opt.state[param]["momentum_buffer"][~p.masks[name]].any()
        if p.step in p.pruning_steps:
            s = p.schedule.sparsity(p.step)
            if scope == "global":
                assert p.active == round((1 - s) * p.total)
            else:
                assert all(r["active"] == round((1 - s) * r["size"]) for r in p.report())
            seen.append(p.step)

    train(model, pruner, opt, 15, torch.Generator().manual_seed(1), check=check)
    assert seen == pruner.pruning_steps == [3, 6, 9, 12]
    for name in pruner.names:
        assert (group_counts(pruner.masks[name], pattern) == n).all(), name
    assert pruner.active * m == pruner.total * n  # exactly N/M of the pattern's weights


def first_step(recipe, seed=3, **fields):
    """A Pruner after its first of two pruning steps (cubic: to 0.4375 on the way to 0.5), with the |w|
    and |g| that step ranked."""
    model = nm_net(seed)
    x, y = torch.randn(6, 8, 6, 6, generator=torch.Generator().manual_seed(seed)), torch.arange(6) % 8
    pruner = Pruner(model, None, recipe, pattern="2:4", end_step=2, prune_every=1, log=None, **fields)
    nn.functional.cross_entropy(model(x), y).backward()
    w = {a: p.detach().abs().flatten().clone() for a, p in pruner.params.items()}
    g = {a: p.grad.abs().flatten().clone() for a, p in pruner.params.items()}
    pruner.before_step()
    pruner.after_step()
    assert pruner.pruning_steps == [1, 2] and pruner.schedule.sparsity(1) == 0.4375
    return pruner, w, g


@pytest.mark.parametrize("recipe", ["fggp", "gmp", "taylor", "magnitude_first"])
def test_global_scope_is_one_greedy_ranking_over_all_layers(recipe):
    """A Pruner step with a pattern equals the oracle on the layers concatenated (groups never cross a
    layer boundary, since every row divides by M); layerwise scope is the oracle per layer."""
    pruner, w, g = first_step(recipe)
    names, order, rate = pruner.names, pruner.recipe.order, pruner.recipe.rate
    cat_w, cat_g = torch.cat([w[a] for a in names]), torch.cat([g[a] for a in names])
    k = pruner.total - round(0.5625 * pruner.total)
    expected = ~oracle_nm(cat_w, cat_g, torch.ones(pruner.total, dtype=torch.bool), k, order, 2, 4, rate, 0)
    assert torch.equal(torch.cat([pruner.masks[a].flatten() for a in names]), expected)
    per_layer = {a: round(0.4375 * w[a].numel()) for a in names}
    assert [r["active"] for r in pruner.report()] != [w[a].numel() - per_layer[a] for a in names]

    pruner, w, g = first_step(recipe, scope="layerwise")
    for a in names:
        size = w[a].numel()
        keep = ~oracle_nm(w[a], g[a], torch.ones(size, dtype=torch.bool), size - round(0.5625 * size), order,
                          2, 4, rate, 0)
        assert torch.equal(pruner.masks[a].flatten(), keep), a


def test_a_per_layer_pool_under_a_pattern():
    """pool_scope=layerwise: the pool, min(room, ceil(k / rate)) weights, is split by what each layer may still lose
    (largest remainder, ties to the earlier layer), drawn in each layer by the greedy rule on |g|; the k
    smallest |w| of the union go."""
    pruner, w, g = first_step("fggp", seed=4, pool_scope="layerwise", rate=0.9)  # a pool short of all room
    names = pruner.names
    k = pruner.total - round(0.5625 * pruner.total)
    room = {a: w[a].numel() // 2 for a in names}  # a dense layer may lose half its weights
    size = min(sum(room.values()), math.ceil(Fraction(k) / Fraction("0.9")))
    assert size < sum(room.values())
    whole = sum(room.values())
    shares = {a: size * room[a] // whole for a in names}
    by_remainder = sorted(names, key=lambda a: (-(size * room[a] % whole), names.index(a)))
    for a in by_remainder[: size - sum(shares.values())]:
        shares[a] += 1
    pool = []
    for a in names:
        counts = {i: 4 for i in range(w[a].numel() // 4)}
        pool += [(a, i) for i in greedy(g[a].tolist(), range(w[a].numel()), shares[a], counts, 2, 4)]
    chosen = set(sorted(pool, key=lambda e: (w[e[0]][e[1]].item(), names.index(e[0]), e[1]))[:k])
    for a in names:
        expected = torch.ones(w[a].numel(), dtype=torch.bool)
        expected[[i for (b, i) in chosen if b == a]] = False
        assert torch.equal(pruner.masks[a].flatten(), expected), a
    global_pool, _, _ = first_step("fggp", seed=4, rate=0.9)
    assert global_pool.mask_hash() != pruner.mask_hash()


@pytest.mark.parametrize("recipe", ["fggp", "random", "taylor"])
def test_resume_mid_run_equals_uninterrupted(recipe):
    def fresh():
        model = nm_net(seed=2)
        opt = sgd(model)
        pruner = Pruner(model, opt, recipe, pattern="2:4", grad_window=2, end_step=20, prune_every=4, seed=3,
                        log=None)
        return model, opt, pruner

    model, opt, pruner = fresh()
    train(model, pruner, opt, 24, torch.Generator().manual_seed(0))

    model2, opt2, pruner2 = fresh()
    gen = torch.Generator().manual_seed(0)
    train(model2, pruner2, opt2, 11, gen)  # 11: inside the grad window of the step-12 prune
    saved = copy.deepcopy({"m": model2.state_dict(), "o": opt2.state_dict(), "p": pruner2.state_dict()})
    model3, opt3, pruner3 = fresh()
    model3.load_state_dict(saved["m"])
    opt3.load_state_dict(saved["o"])
    pruner3.load_state_dict(saved["p"])
    train(model3, pruner3, opt3, 13, gen)
    assert pruner3.mask_hash() == pruner.mask_hash()
    for (k, a), b in zip(model.state_dict().items(), model3.state_dict().values()):
        assert torch.equal(a, b), k


def test_state_and_identity_of_unstructured_recipes_are_unchanged():
    """pattern=None stays out of to_dict: run ids and saved pruner states from before the field still hold."""
    assert "pattern" not in RECIPES["fggp"].to_dict()
    assert get_recipe("fggp", pattern="2:4").to_dict()["pattern"] == "2:4"
    assert Recipe(pattern="02:4").pattern == "2:4" and Recipe(pattern="2:4").nm == (2, 4)
    plain = Pruner(nm_net(), None, "fggp", target_sparsity=0.5, end_step=4, log=None)
    patterned = Pruner(nm_net(), None, "fggp", pattern="2:4", end_step=4, log=None)
    old_state = plain.state_dict()
    assert "pattern" not in old_state["recipe"]
    Pruner(nm_net(), None, "fggp", target_sparsity=0.5, end_step=4, log=None).load_state_dict(old_state)
    with pytest.raises(ValueError, match="^state: it was saved by a pruner with another recipe"):
        patterned.load_state_dict(old_state)
    with pytest.raises(ValueError, match="^state: it was saved by a pruner with another recipe"):
        plain.load_state_dict(patterned.state_dict())
    assert "(2:4: 2 of every 4 weights)" in patterned.summary


# ------------------------------------------------------------------------------------------ refusals
@pytest.mark.parametrize("bad", ["2:2", "0:4", "a:b", "3:2", "2:4:8", "", " 2:4", "-1:4", "2.0:4", 24, (2, 4)])
def test_bad_patterns_are_refused_in_one_line(bad):
    for make in (lambda: Recipe(pattern=bad), lambda: get_recipe("fggp", pattern=bad),
                 lambda: Pruner(nm_net(), None, "fggp", pattern=bad, end_step=4, log=None)):
        with pytest.raises(ValueError, match=r"^pattern: .* is not 'N:M' with whole numbers 1 <= N < M") as err:
            make()
        assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(target_sparsity=0.9), r"^target_sparsity: 0.9 is not 0.5, where pattern '2:4' ends \(1 - N/M\)"),
        (dict(initial_sparsity=0.25, target_sparsity=0.5), r"^initial_sparsity: 0.25 cannot start a run with pattern"),
        (dict(regrow_fraction=0.5), r"^pattern: '2:4' cannot take regrow_fraction 0.5"),
        (dict(recipe="granet"), r"^pattern: '2:4' cannot take regrow_fraction 0.5"),
        (dict(recipe="global_mp"), r"^pattern: '2:4' already keeps 2 of every 4 weights in every layer; min_keep"),
        (dict(recipe="granet_reference", regrow_fraction=0.0), r"^pattern: '2:4' needs progress 'steps'"),
        (dict(recipe="dense"), r"^pattern: '2:4' needs an order"),
        (dict(model="stem"), r"^pattern: '2:4' groups 4 consecutive weights of a row, but layer 0.weight "
                             r"\(shape \(8, 3, 3, 3\)\) has rows of 27; leave it out with exclude=\['0.weight'\]"),
    ],
)
def test_combinations_that_cannot_hold_are_refused_before_any_change(kwargs, message):
    model = (nn.Sequential(nn.Conv2d(3, 8, 3), nn.Flatten(), nn.Linear(8, 4)) if kwargs.pop("model", None)
             else nm_net())
    before = copy.deepcopy(model.state_dict())
    args = dict(recipe="fggp", pattern="2:4", end_step=10, log=None)
    args.update(kwargs)
    with pytest.raises(ValueError, match=message) as err:
        Pruner(model, None, **args)
    assert "\n" not in str(err.value)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_an_unquoted_yaml_pattern_gets_a_hint():
    import yaml

    value = yaml.safe_load("pattern: 2:4")["pattern"]
    assert value == 124
    with pytest.raises(ValueError, match=r"^pattern: 124 is not 'N:M' .*base-60 number 124: quote it, '2:4'\)$"):
        Recipe(pattern=value)


@pytest.mark.filterwarnings("ignore::fggp.pruning.PruningWarning")  # a small prunable share, on purpose
def test_target_may_repeat_the_pattern_or_be_left_out():
    quarter = Pruner(nm_net(), None, "gmp", pattern="1:4", target_sparsity=0.75, end_step=4, log=None)
    assert quarter.schedule.final == 0.75
    assert Pruner(nm_net(), None, "gmp", pattern="1:3", target_sparsity=2 / 3, end_step=4, log=None,
                  include=["0.weight"]).schedule.final == 1 - 1 / 3
    with pytest.raises(ValueError, match="^target_sparsity: missing"):
        Pruner(nm_net(), None, "gmp", end_step=4, log=None)


@pytest.mark.filterwarnings("ignore::fggp.pruning.PruningWarning")  # a small prunable share, on purpose
def test_a_layer_excluded_from_the_pattern_stays_dense():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Flatten(), nn.Linear(8, 4))
    pruner = Pruner(model, None, "gmp", pattern="2:4", exclude=["0.weight"], schedule="one_shot", end_step=1, log=None)
    pruner.before_step()
    pruner.after_step()
    assert pruner.names == ["2.weight"] and pruner.active == 16
    assert model[0].weight.detach().ne(0).all()
