"""The pruning engine: schedules, selection orders, distributions, regrowth, recipes and the Pruner."""

from .distribution import counts_from_densities, erk_densities, uniform_densities
from .floors import check_feasible, floor_counts, minimum_threshold
from .masks import PRUNABLE_MODULES, apply_masks, prunable_parameters
from .pattern import group_counts, parse_pattern, pattern_sparsity, select_nm
from .pruner import Pruner, initial_counts
from .recipes import RECIPES, Recipe, get_recipe, register_recipe
from .regrowth import drop_and_regrow
from .safety import LayerCollapseWarning, PruningWarning
from .schedules import SparsitySchedule, annealed_rate, cosine_decay, cubic_sparsity
from .selection import (
    ORDERS, NonFiniteScores, Order, get_order, k_smallest, pool_size, register_order, select_prune,
)
from .validate import Infeasible

__all__ = [
    "ORDERS", "PRUNABLE_MODULES", "Infeasible", "LayerCollapseWarning", "NonFiniteScores", "Order", "Pruner",
    "PruningWarning", "RECIPES", "Recipe", "SparsitySchedule", "annealed_rate", "apply_masks", "check_feasible",
    "cosine_decay", "counts_from_densities", "cubic_sparsity", "drop_and_regrow", "erk_densities", "floor_counts",
    "get_order", "get_recipe", "group_counts", "initial_counts", "k_smallest", "minimum_threshold", "parse_pattern",
    "pattern_sparsity", "pool_size", "prunable_parameters", "register_order", "register_recipe", "select_nm",
    "select_prune", "uniform_densities",
]
