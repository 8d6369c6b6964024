"""A criterion registered from outside the package, as a researcher's own file would (used by test_orders)."""

from fggp.pruning import ORDERS, RECIPES, Recipe, register_order, register_recipe

if "sq_taylor" not in ORDERS:
    register_order("sq_taylor", lambda w, g: (w * g) ** 2)
    register_order("grad_then_taylor", pool=lambda w, g: g, then=lambda w, g: w * g)
if "sq_taylor" not in RECIPES:
    register_recipe("sq_taylor", Recipe(order="sq_taylor"))
    register_recipe("grad_then_taylor", Recipe(order="grad_then_taylor", rate=0.5))
