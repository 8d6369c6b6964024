"""ERK and uniform densities, and exact integer counts."""

import math

import pytest

from fggp.models import build_model
from fggp.pruning import counts_from_densities, erk_densities, prunable_parameters, uniform_densities


def vgg_shapes():
    return {n: tuple(p.shape) for n, p in prunable_parameters(build_model("vgg19")).items()}


@pytest.mark.parametrize("density", [0.5, 0.1, 0.05, 0.02])
def test_erk_on_vgg19(density):
    shapes = vgg_shapes()
    sizes = {n: math.prod(s) for n, s in shapes.items()}
    d = erk_densities(shapes, density)
    assert abs(sum(d[n] * sizes[n] for n in shapes) - density * sum(sizes.values())) <= 1
    assert all(0 < v <= 1 for v in d.values())
    scores = {n: sum(s) / sizes[n] for n, s in shapes.items()}
    sparse = [n for n in shapes if d[n] < 1]
    assert len(sparse) >= 2
    ref = sparse[0]
    for n in sparse[1:]:
        assert d[n] / d[ref] == pytest.approx(scores[n] / scores[ref], rel=1e-9)
    dense = [n for n in shapes if d[n] == 1]
    for n in dense:  # a dense layer is one whose ERK density would have exceeded 1
        assert scores[n] * d[ref] / scores[ref] >= 1 - 1e-12


def test_erk_at_half_density_makes_the_small_layers_dense():
    d = erk_densities(vgg_shapes(), 0.5)
    assert d["features.0.weight"] == 1.0 and d["classifier.weight"] == 1.0


def test_erk_power_scale_zero_is_uniform():
    shapes = vgg_shapes()
    assert erk_densities(shapes, 0.2, power_scale=0.0) == pytest.approx(uniform_densities(shapes, 0.2))


def test_counts_are_exact_in_total():
    shapes = vgg_shapes()
    sizes = {n: math.prod(s) for n, s in shapes.items()}
    total = round(0.05 * sum(sizes.values()))
    counts = counts_from_densities(sizes, erk_densities(shapes, 0.05), total)
    assert sum(counts.values()) == total
    assert all(0 <= counts[n] <= sizes[n] for n in sizes)


@pytest.mark.parametrize("density", [0.0, 1.5, -0.2])
def test_bad_density(density):
    with pytest.raises(ValueError, match="^density:"):
        erk_densities({"a": (3, 3)}, density)
