"""The pruning engine: schedules, selection orders, distributions, regrowth, recipes and the Pruner."""

from .distribution import counts_from_densities, erk_densities, uniform_densities
from .masks import apply_masks, prunable_parameters
from .pruner import Pruner
from .recipes import RECIPES, Recipe, get_recipe, register_recipe
from .regrowth import drop_and_regrow
from .schedules import SparsitySchedule, annealed_rate, cosine_decay, cubic_sparsity
from .selection import ORDERS, k_smallest, pool_size, select_prune
from .validate import Infeasible

__all__ = [
    "ORDERS", "Infeasible", "RECIPES", "Pruner", "Recipe", "SparsitySchedule", "annealed_rate", "apply_masks",
    "cosine_decay", "counts_from_densities", "cubic_sparsity", "drop_and_regrow", "erk_densities",
    "get_recipe", "k_smallest", "pool_size", "prunable_parameters", "register_recipe", "select_prune",
    "uniform_densities",
]
