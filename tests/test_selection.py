"""select_prune against a brute-force oracle (full sort, index tie-break), plus its properties."""

import math
from fractions import Fraction

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fggp.pruning import k_smallest, pool_size, select_prune
from fggp.pruning.selection import ORDERS


def oracle_smallest(scores, candidates, k):
    return sorted(candidates, key=lambda i: (scores[i], i))[:k]


def oracle(w, g, active, k, order, rate):
    act = [i for i in range(len(w)) if active[i]]
    w, g = w.tolist(), (None if g is None else g.tolist())
    if order == "magnitude":
        chosen = oracle_smallest(w, act, k)
    elif order == "gradient":
        chosen = oracle_smallest(g, act, k)
    elif order == "taylor":
        chosen = oracle_smallest([a * b for a, b in zip(w, g)], act, k)
    else:
        m = min(len(act), math.ceil(Fraction(k) / Fraction(str(rate))))
        first, second = (g, w) if order == "gradient_first" else (w, g)
        chosen = oracle_smallest(second, oracle_smallest(first, act, m), k)
    out = torch.zeros(len(w), dtype=torch.bool)
    out[chosen] = True
    return out


def tied(n, levels, gen):
    """Values from a few levels only, so ties are everywhere (products stay exact in float32)."""
    return torch.randint(0, levels, (n,), generator=gen).float() / 4


DETERMINISTIC = ["magnitude", "gradient", "gradient_first", "magnitude_first", "taylor"]


@pytest.mark.parametrize("order", DETERMINISTIC)
@pytest.mark.parametrize("rate", [1.0, 0.7, 0.5, 0.3, 0.1])
def test_matches_bruteforce_oracle_with_heavy_ties(order, rate):
    gen = torch.Generator().manual_seed(hash((order, rate)) % 2**31)
    for trial in range(12):
        n = int(torch.randint(1, 200, (1,), generator=gen))
        w, g = tied(n, 5, gen), tied(n, 4, gen)
        active = torch.rand(n, generator=gen) < 0.7
        n_active = int(active.sum())
        for k in sorted({0, n_active, n_active // 2, min(1, n_active), max(n_active - 1, 0)}):
            got = select_prune(w, g, active, k, order, rate)
            assert torch.equal(got, oracle(w, g, active, k, order, rate)), (order, rate, n, k)


def test_k_smallest_breaks_ties_by_lower_index():
    scores = torch.tensor([2.0, 1.0, 1.0, 0.0, 1.0, 1.0])
    assert k_smallest(scores, 3).tolist() == [False, True, True, True, False, False]
    assert k_smallest(scores, 0).sum() == 0 and k_smallest(scores, 6).all()


def test_pool_size_uses_the_written_decimal():
    assert pool_size(3, 100, 0.3) == 10  # 3 / 0.3 is 10.000000000000002 in floats
    assert pool_size(7, 100, 0.5) == 14
    assert pool_size(7, 10, 0.5) == 10
    assert pool_size(1, 100, 0.7) == 2


@st.composite
def problems(draw):
    n = draw(st.integers(1, 80))
    w = torch.tensor(draw(st.lists(st.integers(0, 6), min_size=n, max_size=n)), dtype=torch.float32)
    g = torch.tensor(draw(st.lists(st.integers(0, 6), min_size=n, max_size=n)), dtype=torch.float32)
    active = torch.tensor(draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    k = draw(st.integers(0, int(active.sum())))
    rate = draw(st.sampled_from([0.05, 0.1, 0.25, 0.5, 0.9, 1.0]))
    return w, g, active, k, rate


@settings(max_examples=150, deadline=None)
@given(problems(), st.sampled_from(list(ORDERS)))
def test_exactly_k_and_inside_active(problem, order):
    w, g, active, k, rate = problem
    got = select_prune(w, g, active, k, order, rate, generator=torch.Generator().manual_seed(1))
    assert int(got.sum()) == k
    assert not (got & ~active).any()


@settings(max_examples=150, deadline=None)
@given(problems())
def test_rate_one_is_pure_gradient(problem):
    w, g, active, k, _ = problem
    assert torch.equal(select_prune(w, g, active, k, "gradient_first", 1.0), select_prune(w, g, active, k, "gradient"))
    assert torch.equal(select_prune(w, g, active, k, "magnitude_first", 1.0), select_prune(w, g, active, k, "magnitude"))


@settings(max_examples=150, deadline=None)
@given(problems())
def test_pool_covering_all_active_is_pure_magnitude(problem):
    w, g, active, k, _ = problem
    rate = 0.01  # ceil(k / rate) >= 100 > n_active whenever k >= 1
    assert torch.equal(select_prune(w, g, active, k, "gradient_first", rate), select_prune(w, g, active, k, "magnitude"))


def test_random_order_is_seeded_and_uniform():
    active = torch.ones(10, dtype=torch.bool)
    active[0] = False
    w = torch.zeros(10)
    a = select_prune(w, None, active, 3, "random", generator=torch.Generator().manual_seed(5))
    b = select_prune(w, None, active, 3, "random", generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    gen = torch.Generator().manual_seed(0)
    hits = sum(select_prune(w, None, active, 3, "random", generator=gen).int() for _ in range(3000))
    assert hits[0] == 0
    assert ((hits[1:] - 1000).abs() < 120).all()  # 3000 * 3/9 each, binomial sd ~26


@pytest.mark.parametrize(
    "kwargs, field",
    [
        (dict(order="largest"), "order"),
        (dict(rate=0.0), "rate"),
        (dict(rate=1.5), "rate"),
        (dict(k=99), "k"),
        (dict(k=-1), "k"),
        (dict(order="gradient", grad=None), "grad_mag"),
    ],
)
def test_bad_input_names_the_field(kwargs, field):
    w = torch.rand(10)
    args = dict(weight_mag=w, grad_mag=kwargs.pop("grad", torch.rand(10)), active=torch.ones(10, dtype=torch.bool),
                k=3, order="magnitude", rate=0.5)
    args.update(kwargs)
    with pytest.raises(ValueError, match=rf"^{field}:"):
        select_prune(**args)


@pytest.mark.parametrize("warn_only", [False, True])
def test_selection_runs_under_deterministic_mode_as_cuda_enforces_it(monkeypatch, warn_only):
    """CUDA's deterministic mode refuses kthvalue (its index among ties may vary); we read only the value."""
    real = torch.kthvalue

    def kthvalue_as_on_cuda(*args, **kwargs):
        if torch.are_deterministic_algorithms_enabled():
            raise RuntimeError("kthvalue CUDA does not have a deterministic implementation")
        return real(*args, **kwargs)

    monkeypatch.setattr(torch, "kthvalue", kthvalue_as_on_cuda)
    scores = torch.tensor([3.0, 1.0, 2.0, 1.0, 5.0, 1.0])
    torch.use_deterministic_algorithms(True, warn_only=warn_only)
    try:
        picked = k_smallest(scores, 2)
        assert torch.are_deterministic_algorithms_enabled()  # restored, with its warn_only flag
        assert torch.is_deterministic_algorithms_warn_only_enabled() == warn_only
    finally:
        torch.use_deterministic_algorithms(False)
    assert picked.tolist() == [False, True, False, True, False, False]
