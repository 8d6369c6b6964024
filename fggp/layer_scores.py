"""One layer's weights and gradients, and which of them each pruning order would remove.

The computation behind ``notebooks/01_layer_scores.ipynb``: a briefly trained (or checkpointed) model,
the gradient of one minibatch, and the sets that ``fggp.pruning.select_prune`` picks for one layer. A
pruned run's checkpoint brings its masks: the weights it pruned stay pruned, and every order chooses among
the active ones, as the pruner does in training. No plotting here; the figures live in ``fggp.viz.scores``.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import count
from pathlib import Path

import pandas as pd
import torch
from torch import nn

from .data import DATASETS, SHAPES, DeviceLoader, load_dataset
from .models import MODELS, build_model
from .parameters import check_parameters
from .pruning.masks import prunable_parameters
from .pruning.selection import get_order, pool_size, select_prune
from .pruning.validate import in_range, one_of

DEFAULT_ORDERS = ("magnitude", "gradient", "gradient_first", "magnitude_first", "taylor")
# Notebook 01's parameters (its tagged cell, in order; tests/test_layer_scores.py holds them equal).
NOTEBOOK_PARAMETERS = ("arch", "dataset", "layer", "warmup_steps", "checkpoint", "sparsity", "rate", "rates", "seed",
                       "device", "data_dir", "plugins")


def check_notebook(namespace: dict) -> None:
    """Notebook 01's parameters, checked in its first cell after them, before any data loads: a name that is
    not a parameter (papermill's ``-p rates_ 0.3``) and every value, each error one line naming the parameter.
    """
    check_parameters(namespace, NOTEBOOK_PARAMETERS)
    check_layer_parameters(**{name: namespace[name] for name in NOTEBOOK_PARAMETERS})


def check_layer_parameters(arch, dataset, layer=None, warmup_steps=30, checkpoint=None, sparsity=0.2, rate=0.5,
                           rates=(1.0, 0.5, 0.3, 0.1), seed=0, device="cpu", data_dir="data", plugins=()) -> None:
    """The values notebook 01 takes, with the checks a run applies to the same fields (``fggp run``):
    known arch and dataset, a layer the arch has, sparsity in [0, 1], rates in (0, 1], a checkpoint of the
    same arch and dataset. Nothing is loaded or trained."""
    from .train.config import layer_shapes, load_plugins

    load_plugins(plugins)
    one_of("arch", arch, MODELS)
    one_of("dataset", dataset, DATASETS)
    for name, value in (("warmup_steps", warmup_steps), ("seed", seed)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name}: {value!r} must be an integer >= 0")
    in_range("sparsity", sparsity, 0, 1)
    in_range("rate", rate, 0, 1, low_open=True)
    if isinstance(rates, (str, bytes)) or not isinstance(rates, (list, tuple)) or not rates:
        raise ValueError(f"rates: {rates!r} must be a non-empty list of rates in (0, 1], e.g. [1.0, 0.5, 0.1]")
    for value in rates:
        in_range("rates", value, 0, 1, low_open=True)
    text = device if isinstance(device, str) else ""
    if not (text in ("auto", "cpu", "cuda") or text.startswith("cuda:") and text[5:].isdigit()):
        raise ValueError(f"device: {device!r} is not one of auto, cpu, cuda, cuda:N")
    if text.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device: {device!r} was asked for but CUDA is not available here; use cpu or auto")
    if not isinstance(data_dir, str) or not data_dir:
        raise ValueError(f"data_dir: {data_dir!r} must be a directory path (a string)")
    if layer is not None:
        names = list(layer_shapes(arch, tuple(SHAPES[dataset]))[0])
        if not isinstance(layer, str) or layer not in names and f"{layer}.weight" not in names:
            raise ValueError(f"layer: {layer!r} is not a prunable layer of {arch}; they are: {', '.join(names)}")
    if checkpoint is not None:
        if not isinstance(checkpoint, (str, Path)):
            raise ValueError(f"checkpoint: {checkpoint!r} must be a run directory or its checkpoint.pt (a path)")
        _checkpoint_file(Path(checkpoint), arch, dataset)


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
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
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
        model.load_state_dict(read_checkpoint_file(checkpoint_file)["model"])
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


def read_checkpoint_file(file: Path) -> dict:
    """A checkpoint's state: a run's (which ends with its SHA-256, checked here) or a plain ``torch.save``."""
    from .train.checkpoint import DIGEST_MAGIC, DIGEST_BYTES, CheckpointError, _read

    data = Path(file).read_bytes()
    if data[-DIGEST_BYTES:-32] == DIGEST_MAGIC:
        try:
            return _read(Path(file))
        except CheckpointError as err:
            raise ValueError(f"checkpoint: {err}") from None
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


def checkpoint_masks(checkpoint: str | Path | None) -> dict[str, torch.Tensor] | None:
    """The pruning masks a run's checkpoint holds (True = active), or None: no checkpoint, or one saved
    without a pruner. What ``layer_view`` needs so that weights the run pruned stay pruned here."""
    if checkpoint is None:
        return None
    path = Path(checkpoint)
    state = read_checkpoint_file(path / "checkpoint.pt" if path.is_dir() else path)
    masks = (state.get("pruner") or {}).get("masks")
    return None if masks is None else {name: m.bool().cpu() for name, m in masks.items()}


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
    """One layer's weight and gradient (CPU float32, original shape), their flat magnitudes, and which
    weights are active (flat bool; all of them unless a pruned run's mask says otherwise)."""

    name: str
    weight: torch.Tensor
    grad: torch.Tensor
    w_mag: torch.Tensor
    g_mag: torch.Tensor
    active: torch.Tensor | None = None

    def __post_init__(self):
        if self.active is None:
            object.__setattr__(self, "active", torch.ones(self.w_mag.numel(), dtype=torch.bool))
        elif self.active.shape != self.w_mag.shape or self.active.dtype != torch.bool:
            raise ValueError(f"active: must be a flat bool mask of the layer's {self.w_mag.numel()} weights")

    @property
    def n(self) -> int:
        return self.w_mag.numel()

    @property
    def n_active(self) -> int:
        return int(self.active.sum())

    def __repr__(self) -> str:
        pruned = f", {self.n - self.n_active} pruned before" if self.n_active < self.n else ""
        return f"LayerScores({self.name!r}, shape {list(self.weight.shape)}, {self.n} weights{pruned})"


def default_layer(model: nn.Module) -> str:
    """The second prunable layer (the only one if there is one).

    The first layer sees raw pixels through 3 input channels and is often left dense; the second
    is a typical hidden layer with many kernels, where the orders disagree most visibly.
    """
    names = list(prunable_parameters(model))
    return names[1] if len(names) > 1 else names[0]


def layer_view(model: nn.Module, grads: dict[str, torch.Tensor], layer: str | None = None,
               masks: dict[str, torch.Tensor] | None = None) -> LayerScores:
    """The scores of ``layer`` (a prunable weight's name; ``features.4`` works for ``features.4.weight``).

    ``None`` picks ``default_layer(model)``. ``masks`` (``checkpoint_masks``: True = active) mark the
    weights a pruned run already removed, so that no order prunes them a second time.
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
    active = None
    if masks is not None and name in masks:
        if masks[name].shape != weight.shape:
            raise ValueError(f"masks: the mask of {name!r} is {list(masks[name].shape)}, "
                             f"the weight {list(weight.shape)}")
        active = masks[name].detach().bool().cpu().flatten().clone()
    return LayerScores(name, weight, grad, weight.abs().flatten(), grad.abs().flatten(), active)


def describe(scores: LayerScores) -> pd.DataFrame:
    """Summary of |w| and |g| (count, active weights, zeros, quantiles): how far apart the two scales are.
    ``count`` and ``zeros`` are over every weight of the layer; the quantiles over its active weights, the ones
    every order chooses among (all of them, unless a checkpoint's run pruned some: those zeros would otherwise
    pull the |w| quantiles to 0 and hide the scale of the weights that are left)."""
    rows = {}
    active = scores.active
    for label, mag in (("|w|", scores.w_mag), ("|g|", scores.g_mag)):
        values = mag[active] if bool(active.any()) else mag
        q = torch.quantile(values.double(), torch.tensor([0.0, 0.1, 0.5, 0.9, 1.0], dtype=torch.float64)).tolist()
        rows[label] = {"count": mag.numel(), "active": scores.n_active, "zeros": int((mag == 0).sum()),
                       "min": q[0], "10%": q[1], "median": q[2], "90%": q[3], "max": q[4]}
    return pd.DataFrame.from_dict(rows, orient="index")


# ---- what each order prunes -----------------------------------------------------------------------

def is_two_step(order: str) -> bool:
    """Whether an order draws a candidate pool (and so has a rate), as the order registry says."""
    return get_order(order).two_step


def label(order: str, rate: float) -> str:
    """How an order is named in tables and titles: two-step orders carry their rate."""
    return f"{order}({rate:g})" if is_two_step(order) else order


def prune_count(scores: LayerScores, sparsity: float) -> int:
    """k = round(sparsity * n_active): how many of the layer's active weights (all of them in a dense
    layer) a step that removes the fraction ``sparsity`` of them prunes."""
    in_range("sparsity", sparsity, 0, 1)
    return round(sparsity * scores.n_active)


def pruned_sets(scores: LayerScores, sparsity: float, rate: float,
                orders: Sequence[str] = DEFAULT_ORDERS) -> dict[str, torch.Tensor]:
    """``{label(order, rate): flat bool mask of the k weights that order prunes}``, among the active weights.

    Each set is exactly what the training engine (``select_prune``) would pick in one step from this layer
    with these masks: weights a checkpoint's run already pruned are never chosen again.
    """
    k = prune_count(scores, sparsity)
    sets = {}
    for order in orders:
        generator = torch.Generator().manual_seed(0) if order == "random" else None
        sets[label(order, rate)] = select_prune(scores.w_mag, scores.g_mag, scores.active, k, order, rate, generator)
    return sets


def fggp_pool(scores: LayerScores, sparsity: float, rate: float) -> torch.Tensor:
    """FGGP's candidate pool: the ceil(k / rate) active weights with the smallest |g| (flat bool mask).

    gradient_first(rate) prunes the k smallest |w| inside this pool, so the pool is what the rate buys.
    """
    k = prune_count(scores, sparsity)
    return select_prune(scores.w_mag, scores.g_mag, scores.active, pool_size(k, scores.n_active, rate), "gradient")


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
