"""One layer's weights and gradients, and which of them each pruning order would remove.

The computation behind ``notebooks/01_layer_scores.ipynb``: a briefly trained (or checkpointed) model,
the gradient of one minibatch, and the sets that ``fggp.pruning.select_prune`` picks for one layer.
No plotting here; the figures live in ``fggp.viz.scores``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import count
from pathlib import Path

import pandas as pd
import torch
from torch import nn

from .data import DeviceLoader, load_dataset
from .models import build_model
from .pruning.masks import prunable_parameters
from .pruning.selection import get_order, pool_size, select_prune
from .pruning.validate import in_range

DEFAULT_ORDERS = ("magnitude", "gradient", "gradient_first", "magnitude_first", "taylor")


# ---- a model with meaningful gradients -----------------------------------------------------------

def warmup(arch: str, dataset: str, steps: int = 50, seed: int = 0, device: str = "cpu", data_dir: str = "data",
           checkpoint: str | Path | None = None, batch_size: int = 128, plugins=()
           ) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    """A model and ``{name: grad}`` of its prunable weights on one fresh minibatch.

    At initialization gradients say little about which weights matter, so the model is first trained
    for ``steps`` minibatches (SGD, lr 0.05, momentum 0.9), or takes the weights of a run's
    ``checkpoint`` (its directory or its ``checkpoint.pt``) instead. The gradient comes from the next
    minibatch, in train mode, as the pruner sees it during training. ``plugins`` (as in a run's config)
    are imported first, so a model or dataset registered there can be looked at too.

    On CPU it runs on one thread: the result then does not depend on the machine's core count (thread
    partitioning changes float summation order), and the small models this walkthrough uses gain little
    from more threads while losing ten times over when another process holds a core.
    """
    from .train.config import load_plugins

    load_plugins(plugins)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps: {steps!r} must be an integer >= 0")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size: {batch_size!r} must be an integer >= 1")
    checkpoint_file = None if checkpoint is None else _checkpoint_file(Path(checkpoint), arch, dataset)
    threads = torch.get_num_threads()
    if torch.device(device).type == "cpu":
        torch.set_num_threads(1)
    try:
        return _warmup(arch, dataset, steps, seed, device, data_dir, checkpoint_file, batch_size)
    finally:
        torch.set_num_threads(threads)


def _warmup(arch, dataset, steps, seed, device, data_dir, checkpoint_file, batch_size):
    torch.manual_seed(seed)
    data = load_dataset(dataset, data_dir)
    model = build_model(arch, num_classes=data.num_classes, input_shape=data.shape).to(device)
    loader = DeviceLoader(data.train, batch_size, train=True, mean=data.mean, std=data.std, device=device,
                          seed=seed, augment=data.augment)
    batches = _endless(loader)
    model.train()
    if checkpoint_file is not None:
        model.load_state_dict(torch.load(checkpoint_file, map_location="cpu", weights_only=True)["model"])
    else:
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        for _ in range(steps):
            x, y = next(batches)
            optimizer.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()

    model.zero_grad(set_to_none=True)
    x, y = next(batches)
    nn.functional.cross_entropy(model(x), y).backward()
    grads = {name: p.grad.detach().clone() for name, p in prunable_parameters(model).items()}
    model.zero_grad(set_to_none=True)
    return model.eval(), grads


def _endless(loader: DeviceLoader) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Minibatches across epoch boundaries, each epoch shuffled by its own seeded draw."""
    for epoch in count():
        yield from loader.iter_epoch(epoch)


def _checkpoint_file(path: Path, arch: str, dataset: str) -> Path:
    """A run's checkpoint.pt, refused up front (one line) when missing or from another arch or dataset."""
    file = path / "checkpoint.pt" if path.is_dir() else path
    if not file.is_file():
        raise ValueError(f"checkpoint: no checkpoint at '{file}' (give a run directory or its checkpoint.pt)")
    config_file = file.parent / "config.json"
    if config_file.is_file():
        config = json.loads(config_file.read_text())
        for field, wanted in (("arch", arch), ("dataset", dataset)):
            if config.get(field, wanted) != wanted:
                raise ValueError(f"checkpoint: '{file.parent}' was trained with {field} {config[field]!r}, "
                                 f"not {wanted!r}")
    return file


# ---- one layer ------------------------------------------------------------------------------------

@dataclass(frozen=True, repr=False)
class LayerScores:
    """One layer's weight and gradient (CPU float32, original shape) and their flat magnitudes."""

    name: str
    weight: torch.Tensor
    grad: torch.Tensor
    w_mag: torch.Tensor
    g_mag: torch.Tensor

    @property
    def n(self) -> int:
        return self.w_mag.numel()

    def __repr__(self) -> str:
        return f"LayerScores({self.name!r}, shape {list(self.weight.shape)}, {self.n} weights)"


def default_layer(model: nn.Module) -> str:
    """The second prunable layer (the only one if there is one).

    The first layer sees raw pixels through 3 input channels and is often left dense; the second
    is a typical hidden layer with many kernels, where the orders disagree most visibly.
    """
    names = list(prunable_parameters(model))
    return names[1] if len(names) > 1 else names[0]


def layer_view(model: nn.Module, grads: dict[str, torch.Tensor], layer: str | None = None) -> LayerScores:
    """The scores of ``layer`` (a prunable weight's name; ``features.4`` works for ``features.4.weight``).

    ``None`` picks ``default_layer(model)``.
    """
    params = prunable_parameters(model)
    name = default_layer(model) if layer is None else layer
    if name not in params and f"{name}.weight" in params:
        name = f"{name}.weight"
    if name not in params:
        raise ValueError(f"layer: {layer!r} is not a prunable layer of this model; they are: {', '.join(params)}")
    if name not in grads:
        raise ValueError(f"grads: no gradient for {name!r}; pass the grads that warmup returned with this model")
    weight = params[name].detach().float().cpu().clone()
    grad = grads[name].detach().float().cpu().clone()
    if grad.shape != weight.shape:
        raise ValueError(f"grads: the gradient of {name!r} is {list(grad.shape)}, the weight {list(weight.shape)}")
    return LayerScores(name, weight, grad, weight.abs().flatten(), grad.abs().flatten())


def describe(scores: LayerScores) -> pd.DataFrame:
    """Summary of |w| and |g| (count, zeros, quantiles): how far apart the two scales are."""
    rows = {}
    for label, mag in (("|w|", scores.w_mag), ("|g|", scores.g_mag)):
        q = torch.quantile(mag.double(), torch.tensor([0.0, 0.1, 0.5, 0.9, 1.0], dtype=torch.float64)).tolist()
        rows[label] = {"count": mag.numel(), "zeros": int((mag == 0).sum()), "min": q[0], "10%": q[1],
                       "median": q[2], "90%": q[3], "max": q[4]}
    return pd.DataFrame.from_dict(rows, orient="index")


# ---- what each order prunes -----------------------------------------------------------------------

def is_two_step(order: str) -> bool:
    """Whether an order draws a candidate pool (and so has a rate), as the order registry says."""
    return get_order(order).two_step


def label(order: str, rate: float) -> str:
    """How an order is named in tables and titles: two-step orders carry their rate."""
    return f"{order}({rate:g})" if is_two_step(order) else order


def prune_count(scores: LayerScores, sparsity: float) -> int:
    """k = round(sparsity * n): how many weights a step to ``sparsity`` removes from a dense layer."""
    in_range("sparsity", sparsity, 0, 1)
    return round(sparsity * scores.n)


def pruned_sets(scores: LayerScores, sparsity: float, rate: float,
                orders: Sequence[str] = DEFAULT_ORDERS) -> dict[str, torch.Tensor]:
    """``{label(order, rate): flat bool mask of the k weights that order prunes}``, all weights active.

    Each set is exactly what the training engine (``select_prune``) would pick in one step from a dense
    layer. For a checkpoint that was already pruned, its zero weights count as active here, so
    magnitude-based orders take them first.
    """
    k = prune_count(scores, sparsity)
    active = torch.ones(scores.n, dtype=torch.bool)
    sets = {}
    for order in orders:
        generator = torch.Generator().manual_seed(0) if order == "random" else None
        sets[label(order, rate)] = select_prune(scores.w_mag, scores.g_mag, active, k, order, rate, generator)
    return sets


def fggp_pool(scores: LayerScores, sparsity: float, rate: float) -> torch.Tensor:
    """FGGP's candidate pool: the ceil(k / rate) weights with the smallest |g| (flat bool mask).

    gradient_first(rate) prunes the k smallest |w| inside this pool, so the pool is what the rate buys.
    """
    k = prune_count(scores, sparsity)
    active = torch.ones(scores.n, dtype=torch.bool)
    return select_prune(scores.w_mag, scores.g_mag, active, pool_size(k, scores.n, rate), "gradient")


def jaccard(a: torch.Tensor, b: torch.Tensor) -> float:
    """|A∩B| / |A∪B| of two bool masks; 1.0 for two empty sets (they agree completely)."""
    union = int((a | b).sum())
    return 1.0 if union == 0 else int((a & b).sum()) / union


def overlap_table(sets: dict[str, torch.Tensor]) -> pd.DataFrame:
    """Jaccard index between every pair of pruned sets: 1 = same weights, 0 = disjoint."""
    names = list(sets)
    return pd.DataFrame([[jaccard(sets[a], sets[b]) for b in names] for a in names], index=names, columns=names)


# ---- layout ---------------------------------------------------------------------------------------

def kernel_matrix(t: torch.Tensor) -> torch.Tensor:
    """A weight as a 2-D image: conv ``[out, in, kh, kw]`` -> ``[out*kh, in*kw]``; linear ``[out, in]`` as is.

    Each kernel is a kh x kw tile: row block ``o`` is output channel ``o``, column block ``c`` is input
    channel ``c``, i.e. ``m[o*kh + i, c*kw + j] == t[o, c, i, j]``. A dead output channel shows as a
    dark band of rows, a useless input channel as a band of columns.
    """
    if t.dim() == 2:
        return t
    if t.dim() != 4:
        raise ValueError(f"t: expected a conv [out, in, kh, kw] or linear [out, in] weight, got shape {list(t.shape)}")
    out, inp, kh, kw = t.shape
    return t.permute(0, 2, 1, 3).reshape(out * kh, inp * kw)
