"""Schedules hit their endpoints exactly, never go down, and prune at the end step itself."""

import math

import pytest

from fggp.pruning import SparsitySchedule, annealed_rate, cosine_decay, cubic_sparsity


@pytest.mark.parametrize("initial, final", [(0.0, 0.9), (0.5, 0.98), (0.0, 0.95)])
@pytest.mark.parametrize("power", [1, 3, 5])
def test_cubic_endpoints_exact_and_monotone(initial, final, power):
    start, end = 100, 4100
    assert cubic_sparsity(start, start, end, initial, final, power) == initial
    assert cubic_sparsity(end, start, end, initial, final, power) == final
    assert cubic_sparsity(0, start, end, initial, final, power) == initial
    assert cubic_sparsity(10**6, start, end, initial, final, power) == final
    values = [cubic_sparsity(t, start, end, initial, final, power) for t in range(0, 5000, 7)]
    assert all(a <= b for a, b in zip(values, values[1:]))


def test_cubic_matches_zhu_gupta_formula():
    t, t0, t1, si, sf = 1700, 200, 3200, 0.1, 0.9
    assert cubic_sparsity(t, t0, t1, si, sf) == pytest.approx(sf + (si - sf) * (1 - (t - t0) / (t1 - t0)) ** 3)


def test_pruning_steps_include_the_end_step():
    s = SparsitySchedule(initial=0.0, final=0.9, start=0, end=10, every=3)
    assert s.pruning_steps() == [3, 6, 9, 10]
    assert s.sparsity(10) == 0.9
    s = SparsitySchedule(initial=0.0, final=0.9, start=5, end=11, every=3)
    assert s.pruning_steps() == [5, 8, 11]
    assert s.next_pruning_step(6) == 8 and s.next_pruning_step(12) is None


def test_paper_schedule_counts():
    # 391 iterations per epoch, prune from epoch 0 to 80 every 1000 iterations.
    s = SparsitySchedule(initial=0.0, final=0.98, start=0, end=80 * 391, every=1000)
    steps = s.pruning_steps()
    assert steps[0] == 1000 and steps[-1] == 31280 and len(steps) == 32
    assert s.sparsity(steps[-1]) == 0.98


def test_linear_and_one_shot():
    lin = SparsitySchedule(initial=0.2, final=0.8, start=0, end=100, every=10, kind="linear")
    assert lin.sparsity(50) == pytest.approx(0.5)
    one = SparsitySchedule(initial=0.0, final=0.9, start=0, end=40, every=10, kind="one_shot")
    assert one.pruning_steps() == [40]
    assert one.sparsity(39) == 0.0 and one.sparsity(40) == 0.9


def test_no_pruning_steps_when_target_equals_initial():
    assert SparsitySchedule(initial=0.5, final=0.5, start=0, end=100, every=10).pruning_steps() == []


@pytest.mark.parametrize(
    "kwargs, field",
    [
        (dict(final=1.0), "target_sparsity"),
        (dict(final=-0.1), "target_sparsity"),
        (dict(initial=1.0, final=1.0), "initial_sparsity"),
        (dict(initial=0.6, final=0.5), "target_sparsity"),
        (dict(start=50, end=10), "end"),
        (dict(every=0), "every"),
        (dict(kind="exponential"), "schedule"),
        (dict(end=2.5), "end"),
    ],
)
def test_bad_schedule_names_the_field(kwargs, field):
    args = dict(initial=0.0, final=0.9, start=0, end=100, every=10)
    args.update(kwargs)
    with pytest.raises(ValueError, match=rf"^{field}:"):
        SparsitySchedule(**args)


def test_rate_schedules():
    assert [annealed_rate(i, 5, 0.4, 0.1, "fixed") for i in range(5)] == [0.4] * 5
    lin = [annealed_rate(i, 5, 1.0, 0.2, "linear") for i in range(5)]
    assert lin == pytest.approx([1.0, 0.8, 0.6, 0.4, 0.2])
    cos = [annealed_rate(i, 5, 1.0, 0.2, "cosine") for i in range(5)]
    assert cos[0] == 1.0 and cos[-1] == pytest.approx(0.2) and cos[2] == pytest.approx(0.6)
    assert all(a >= b for a, b in zip(cos, cos[1:]))
    with pytest.raises(ValueError, match="^rate_schedule:"):
        annealed_rate(0, 5, 1.0, 0.2, "step")


def test_cosine_decay():
    assert cosine_decay(0, 100, 0.5) == 0.5
    assert cosine_decay(50, 100, 0.5) == pytest.approx(0.25)
    assert cosine_decay(100, 100, 0.5) == pytest.approx(0.0, abs=1e-12)
    assert cosine_decay(30, 100, 0.5) == pytest.approx(0.25 * (1 + math.cos(math.pi * 0.3)))
