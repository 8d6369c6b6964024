"""Layer collapse: a final mask that leaves a layer fewer kept weights than the layer has outputs.

Below that line some outputs have no incoming weight at all and ignore the input; it needs no tuning and
scales with the layer. This is what Global MP's per-layer floor is meant to prevent.
"""

from __future__ import annotations

import functools
import math

import pandas as pd
import torch

from ..models import build_model
from .setups import _label, _recipe_order

COLLAPSE_COLUMNS = ["run_id", "status", "setup", "recipe", "arch", "target_sparsity", "seed", "layer", "kept",
                    "size", "outputs", "density_pct"]


@functools.cache
def _layer_shapes(arch: str) -> dict[str, tuple[int, int]] | None:
    """Per parameter: (size, outputs = its first dimension), from the architecture built on the meta
    device (no memory, no init cost). None for an arch this session does not know."""
    try:
        with torch.device("meta"):
            model = build_model(arch)
    except ValueError:
        return None
    return {n: (p.numel(), int(p.shape[0])) for n, p in model.named_parameters()}


def collapsed_layers(arch: str, layer_density: dict, prunable_weights=None, layer_shapes: dict | None = None
                     ) -> list[dict]:
    """The layers of one final mask that keep fewer weights than they have outputs (an empty layer always).

    Why this line: a layer that keeps fewer weights than its output units (conv output channels, the
    classifier's classes) has outputs with no incoming weight at all, whose value no longer depends on
    the input; at the classifier, classes the network can never be driven to. It needs no tuning and
    scales with the layer: a 512-channel VGG conv needs 512 of its 2.4 M weights (0.02%), the 10-class
    classifier 10. Without the layer shapes (an arch unknown here, or sizes that do not add up to the
    run's prunable_weights) only empty layers are flagged. ``layer_shapes`` (name -> weight shape, as a
    result.json may record them) is used first: it is right whatever the input shape the model was built for.
    """
    if isinstance(layer_shapes, dict) and layer_shapes:
        shapes = {n: (math.prod(shape), int(shape[0])) for n, shape in layer_shapes.items()}
    else:
        shapes = _layer_shapes(arch) if isinstance(arch, str) else None
    if shapes is not None and (any(n not in shapes for n in layer_density) or (
            prunable_weights is not None and not pd.isna(prunable_weights)
            and sum(shapes[n][0] for n in layer_density) != int(prunable_weights))):
        shapes = None
    flagged = []
    for name, density in layer_density.items():
        if shapes is None:
            if density == 0:
                flagged.append(dict(layer=name, kept=0, size=None, outputs=None, density_pct=0.0))
            continue
        size, outputs = shapes[name]
        kept = round(density * size)
        if kept < outputs:
            flagged.append(dict(layer=name, kept=kept, size=size, outputs=outputs, density_pct=100 * density))
    return flagged


def layer_collapse(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (run, layer) whose final mask left the layer collapsed (``collapsed_layers``)."""
    records = []
    for _, row in df.iterrows():
        density = row.get("layer_density")
        if not isinstance(density, dict) or not density:
            continue
        for layer in collapsed_layers(row["arch"], density, row.get("prunable_weights"), row.get("layer_shapes")):
            records.append({"run_id": row["run_id"], "status": row["status"], "setup": row["setup"],
                            "recipe": _label(row["recipe"], row.get("variant")), "arch": row["arch"],
                            "target_sparsity": row["target_sparsity"], "seed": row["seed"], **layer})
    out = pd.DataFrame(records, columns=COLLAPSE_COLUMNS)
    order = out["recipe"].map(_recipe_order)
    return (out.assign(_r=order).sort_values(["setup", "_r", "target_sparsity", "seed"], kind="stable")
               .drop(columns="_r").reset_index(drop=True))
