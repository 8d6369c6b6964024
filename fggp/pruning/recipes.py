"""Named recipes: each one a combination of an order, a schedule, a scope and the optional extras.

A recipe holds only *how* to prune; *how much* and *when* (target, initial sparsity, steps) belong to
the run. Build a new combination with ``Recipe(...)`` or ``get_recipe("fggp", rate=0.3)``; the
registry is only a place to find the published ones by name.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .distribution import DISTRIBUTIONS
from .pattern import parse_pattern
from .schedules import PROGRESS, RATE_SCHEDULES, SCHEDULES
from .selection import ORDERS, get_order
from .validate import at_least, in_range, one_of

SCOPES = ("global", "layerwise")
FLOOR_RULES = ("rescale", "rerank")


@dataclass(frozen=True)
class Recipe:
    """How to prune. ``order=None`` means no pruning at all (the dense baseline).

    rate / rate_schedule / rate_end: the two-step orders' pool rate; ``fixed`` keeps ``rate`` (FGGP),
    ``linear`` and ``cosine`` anneal it from ``rate`` to ``rate_end`` over the pruning steps. FGGP's
    default rate 0.5 is the kit's choice, not a value from the paper: sweep it.
    pool_scope: where a two-step order draws its candidate pool: ``global`` (one pool over all layers,
    ranked by raw |g|), ``layerwise`` (each layer gives the same fraction of its active weights), or None
    (= ``scope``). A layerwise scope always pools per layer.
    progress: ``steps`` (the target is met exactly at the end step) or ``pruning_steps`` (GraNet's code:
    progress in pruning-step indices, ending one step short of the target).
    min_keep: per-layer floor of kept weights (Global MP's Minimum Threshold) as a count (int) or as a
    fraction of all prunable weights (float < 1, ``int(min_keep * N)``); a layer smaller than the floor
    stays dense. floor_rule: ``rescale`` is the authors' clamp-and-rescale (fggp/pruning/floors.py);
    ``rerank`` holds layers at their floor and ranks the rest again by the order's score.
    regrow_fraction: GraNet's drop-and-regrow fraction, cosine-decayed over the whole run down to
    ``regrow_fraction_min`` (GraNet's eta_min); drop-and-regrow runs at every pruning step and every
    ``prune_every`` steps after the pruning window until training ends.
    pattern: ``"N:M"`` (e.g. ``"2:4"``) prunes gradually to N of every M consecutive weights of each row
    (fggp/pruning/pattern.py); the target is then 1 - N/M. None (default): unstructured. It is left out of
    ``to_dict`` when None, so the recipes, run ids and saved states from before it stay the same.
    """

    order: str | None = "magnitude"
    schedule: str = "cubic"
    power: float = 3.0
    scope: str = "global"
    rate: float = 1.0
    rate_schedule: str = "fixed"
    rate_end: float = 1.0
    pool_scope: str | None = None
    grad_window: int = 1
    progress: str = "steps"
    min_keep: int | float = 0
    floor_rule: str = "rescale"
    initial_distribution: str = "erk"
    regrow_fraction: float = 0.0
    regrow_fraction_min: float = 0.005
    pattern: str | None = None

    def __post_init__(self):
        if self.order is not None:
            one_of("order", self.order, ORDERS)
        one_of("schedule", self.schedule, SCHEDULES)
        one_of("scope", self.scope, SCOPES)
        if self.pool_scope is not None:
            one_of("pool_scope", self.pool_scope, SCOPES)
            if self.scope == "layerwise" and self.pool_scope == "global":
                raise ValueError("pool_scope: 'global' needs scope 'global' (a layerwise scope pools per layer)")
        one_of("progress", self.progress, PROGRESS)
        one_of("floor_rule", self.floor_rule, FLOOR_RULES)
        one_of("rate_schedule", self.rate_schedule, RATE_SCHEDULES)
        one_of("initial_distribution", self.initial_distribution, tuple(DISTRIBUTIONS))
        in_range("rate", self.rate, 0, 1, low_open=True)
        in_range("rate_end", self.rate_end, 0, 1, low_open=True)
        in_range("regrow_fraction", self.regrow_fraction, 0, 1, high_open=True)
        in_range("regrow_fraction_min", self.regrow_fraction_min, 0, 1, high_open=True)
        if 0 < self.regrow_fraction < self.regrow_fraction_min:
            raise ValueError(f"regrow_fraction_min: {self.regrow_fraction_min} is above regrow_fraction "
                             f"{self.regrow_fraction}; it must be <= it")
        if isinstance(self.grad_window, bool) or not isinstance(self.grad_window, int) or self.grad_window < 1:
            raise ValueError(f"grad_window: {self.grad_window!r} must be an integer >= 1")
        at_least("power", self.power, 0)
        if isinstance(self.min_keep, float):
            in_range("min_keep", self.min_keep, 0, 1, high_open=True)
        else:
            at_least("min_keep", self.min_keep, 0)
        if self.pattern is not None:
            self._check_pattern()

    def _check_pattern(self) -> None:
        """N:M and the fields that cannot hold with it, each refused in one ``pattern:`` line."""
        n, m = parse_pattern(self.pattern)
        object.__setattr__(self, "pattern", f"{n}:{m}")  # '02:4' and '2:4' are one recipe
        p = self.pattern
        if not self.prunes:
            raise ValueError(f"pattern: {p!r} needs an order (order=None prunes nothing); leave pattern unset")
        if self.regrow_fraction > 0:
            raise ValueError(f"pattern: {p!r} cannot take regrow_fraction {self.regrow_fraction} (GraNet's "
                             f"drop-and-regrow moves weights between groups of {m}); set regrow_fraction=0")
        if self.min_keep:
            raise ValueError(f"pattern: {p!r} already keeps {n} of every {m} weights in every layer; min_keep "
                             f"must be 0 with it, not {self.min_keep!r}")
        if self.progress != "steps":
            raise ValueError(f"pattern: {p!r} needs progress 'steps' ({self.progress!r} ends short of the "
                             f"target, so groups would not all reach {n} of {m})")

    @property
    def prunes(self) -> bool:
        return self.order is not None

    @property
    def uses_gradient(self) -> bool:
        return (self.prunes and get_order(self.order).uses_gradient) or self.regrow_fraction > 0

    @property
    def regrows(self) -> bool:
        return self.prunes and self.regrow_fraction > 0

    @property
    def nm(self) -> tuple[int, int] | None:
        """(N, M) of the pattern, or None for unstructured pruning."""
        return None if self.pattern is None else parse_pattern(self.pattern)

    @property
    def resolved_pool_scope(self) -> str:
        return self.pool_scope or self.scope

    def replace(self, **changes) -> "Recipe":
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            allowed = ", ".join(f.name for f in dataclasses.fields(self))
            raise ValueError(f"recipe field: {unknown[0]!r} is not one of {allowed}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        """The fields as a dict; ``pattern`` only when set, so unstructured recipes read as they always did
        (run identities and ``Pruner.load_state_dict``'s recipe comparison use this)."""
        out = dataclasses.asdict(self)
        if out["pattern"] is None:
            del out["pattern"]
        return out


RECIPES: dict[str, Recipe] = {
    "dense": Recipe(order=None),
    "fggp": Recipe(order="gradient_first", rate=0.5),
    "fggp_annealed": Recipe(order="gradient_first", rate=1.0, rate_schedule="cosine", rate_end=0.1),
    "magnitude_first": Recipe(order="magnitude_first", rate=0.5),
    "gmp": Recipe(order="magnitude"),
    "gmp_uniform": Recipe(order="magnitude", scope="layerwise", initial_distribution="uniform"),
    "granet": Recipe(order="magnitude", regrow_fraction=0.5),
    "granet_reference": Recipe(order="magnitude", regrow_fraction=0.5, progress="pruning_steps"),
    "fggp_granet": Recipe(order="gradient_first", rate=0.5, regrow_fraction=0.5),
    "global_mp": Recipe(order="magnitude", min_keep=0.0005),
    "global_mp_oneshot": Recipe(order="magnitude", schedule="one_shot", min_keep=0.0005),
    "global_mp_rerank": Recipe(order="magnitude", min_keep=0.0005, floor_rule="rerank"),
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
    """Make a combination available by name (to the CLI, sweeps and notebooks).

    A name already taken is refused: a plugin that silently replaced ``fggp`` would change every run that
    names it while the run ids stayed the same."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"recipe: name {name!r} must be a non-empty string")
    if name in RECIPES:
        raise ValueError(f"recipe: {name!r} is already registered")
    if not isinstance(recipe, Recipe):
        raise ValueError(f"recipe: expected a Recipe, got {type(recipe).__name__}")
    RECIPES[name] = recipe
