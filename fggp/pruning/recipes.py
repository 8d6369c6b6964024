"""Named recipes: each one a combination of an order, a schedule, a scope and the optional extras.

A recipe holds only *how* to prune; *how much* and *when* (target, initial sparsity, steps) belong to
the run. Build a new combination with ``Recipe(...)`` or ``get_recipe("fggp", rate=0.3)``; the
registry is only a place to find the published ones by name.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .distribution import DISTRIBUTIONS
from .schedules import RATE_SCHEDULES, SCHEDULES
from .selection import ORDERS
from .validate import at_least, in_range, one_of

SCOPES = ("global", "layerwise")


@dataclass(frozen=True)
class Recipe:
    """How to prune. ``order=None`` means no pruning at all (the dense baseline).

    rate / rate_schedule / rate_end: the two-step orders' pool rate; ``fixed`` keeps ``rate`` (FGGP),
    ``linear`` and ``cosine`` anneal it from ``rate`` to ``rate_end`` over the pruning steps. FGGP's
    default rate 0.5 is the kit's choice, not a value from the paper: sweep it.
    min_keep: per-layer floor of kept weights (Global MP's Minimum Threshold) as a count (int) or as a
    fraction of all prunable weights (float < 1); a layer smaller than the floor stays dense.
    regrow_fraction: GraNet's drop-and-regrow fraction at each pruning step, cosine-decayed over the run.
    """

    order: str | None = "magnitude"
    schedule: str = "cubic"
    power: float = 3.0
    scope: str = "global"
    rate: float = 1.0
    rate_schedule: str = "fixed"
    rate_end: float = 1.0
    grad_window: int = 1
    min_keep: int | float = 0
    initial_distribution: str = "erk"
    regrow_fraction: float = 0.0

    def __post_init__(self):
        if self.order is not None:
            one_of("order", self.order, ORDERS)
        one_of("schedule", self.schedule, SCHEDULES)
        one_of("scope", self.scope, SCOPES)
        one_of("rate_schedule", self.rate_schedule, RATE_SCHEDULES)
        one_of("initial_distribution", self.initial_distribution, tuple(DISTRIBUTIONS))
        in_range("rate", self.rate, 0, 1, low_open=True)
        in_range("rate_end", self.rate_end, 0, 1, low_open=True)
        in_range("regrow_fraction", self.regrow_fraction, 0, 1, high_open=True)
        if isinstance(self.grad_window, bool) or not isinstance(self.grad_window, int) or self.grad_window < 1:
            raise ValueError(f"grad_window: {self.grad_window!r} must be an integer >= 1")
        at_least("power", self.power, 0)
        if isinstance(self.min_keep, float):
            in_range("min_keep", self.min_keep, 0, 1, high_open=True)
        else:
            at_least("min_keep", self.min_keep, 0)

    @property
    def prunes(self) -> bool:
        return self.order is not None

    @property
    def uses_gradient(self) -> bool:
        return self.order in ("gradient", "gradient_first", "magnitude_first", "taylor") or self.regrow_fraction > 0

    def replace(self, **changes) -> "Recipe":
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            allowed = ", ".join(f.name for f in dataclasses.fields(self))
            raise ValueError(f"recipe field: {unknown[0]!r} is not one of {allowed}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


RECIPES: dict[str, Recipe] = {
    "dense": Recipe(order=None),
    "fggp": Recipe(order="gradient_first", rate=0.5),
    "fggp_annealed": Recipe(order="gradient_first", rate=1.0, rate_schedule="cosine", rate_end=0.1),
    "magnitude_first": Recipe(order="magnitude_first", rate=0.5),
    "gmp": Recipe(order="magnitude"),
    "gmp_uniform": Recipe(order="magnitude", scope="layerwise", initial_distribution="uniform"),
    "granet": Recipe(order="magnitude", regrow_fraction=0.5),
    "global_mp": Recipe(order="magnitude", min_keep=0.0005),
    "global_mp_oneshot": Recipe(order="magnitude", schedule="one_shot", min_keep=0.0005),
    "gradient": Recipe(order="gradient"),
    "taylor": Recipe(order="taylor"),
    "random": Recipe(order="random"),
}


def get_recipe(name: str | Recipe, **overrides) -> Recipe:
    """A registered recipe by name (or a Recipe as is), with any fields overridden."""
    if isinstance(name, Recipe):
        recipe = name
    else:
        one_of("recipe", name, RECIPES)
        recipe = RECIPES[name]
    return recipe.replace(**overrides) if overrides else recipe


def register_recipe(name: str, recipe: Recipe) -> None:
    """Make a combination available by name (to the CLI, sweeps and notebooks)."""
    if not isinstance(recipe, Recipe):
        raise ValueError(f"recipe: expected a Recipe, got {type(recipe).__name__}")
    RECIPES[name] = recipe
