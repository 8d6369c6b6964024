"""RunConfig: one run = arch x recipe x target sparsity x initial sparsity x seed, plus the recipe.

Defaults are the GraNet/FGGP CIFAR-10 recipe (REFERENCE.md). Every field is checked here, before any
data is loaded, and a bad one is a one-line ValueError that names it.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib
import importlib.util
import json
import math
import os
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..data import DATASETS, SHAPES
from ..models import MODELS, build_model
from ..pruning import RECIPES, check_feasible, floor_counts, get_order, get_recipe, initial_counts, prunable_parameters
from ..pruning.validate import at_least, in_range, one_of

PRECISIONS = ("auto", "fp32", "bf16")
NOT_IDENTITY = ("data_dir", "download", "progress", "device", "channels_last", "plugins")


@dataclass(frozen=True)
class RunConfig:
    arch: str = "vgg19"
    dataset: str = "cifar10"
    recipe: str = "fggp"
    target_sparsity: float = 0.9
    initial_sparsity: float = 0.0
    rate: float | None = None  # None: the recipe's own rate
    grad_window: int | None = None  # None: the recipe's own
    epochs: int = 160
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    lr_milestones: tuple[float, ...] = (0.5, 0.75)  # fractions of the epochs: 80 and 120 of 160
    lr_gamma: float = 0.1
    prune_start_epoch: int = 0
    prune_end_epoch: int = 80
    prune_every: int = 1000  # optimizer steps
    seed: int = 18
    device: str = "auto"
    data_dir: str = "data"
    download: bool = True  # fetch CIFAR-10 when missing (never another dataset instead)
    deterministic: bool = False
    precision: str = "auto"  # auto: bf16 autocast on CUDA, fp32 on CPU
    channels_last: bool | None = None  # None: channels_last on CUDA; a layout, not part of the run's identity
    augment: bool | None = None  # None: the dataset's default (off for digits, mnist, fashion_mnist)
    val_size: int = 0  # training images held out for validation (stratified, one fixed split); 0: none
    compile: bool = False
    bn_recalibrate: int = 0  # >0: re-estimate BatchNorm statistics on this many train batches before each evaluation
    progress: bool = True
    extra: dict = field(default_factory=dict)  # free-form labels; part of the run's identity
    plugins: tuple[str, ...] = ()  # modules or .py files imported first: they register orders and recipes

    def __post_init__(self):
        object.__setattr__(self, "plugins", load_plugins(self.plugins))
        one_of("arch", self.arch, MODELS)
        one_of("dataset", self.dataset, DATASETS)
        one_of("recipe", self.recipe, RECIPES)
        in_range("target_sparsity", self.target_sparsity, 0, 1, high_open=True)
        in_range("initial_sparsity", self.initial_sparsity, 0, 1, high_open=True)
        if self.recipe == "dense":  # the dense baseline is one run whatever sparsity a grid asks for
            object.__setattr__(self, "target_sparsity", 0.0)
            object.__setattr__(self, "initial_sparsity", 0.0)
        if self.target_sparsity < self.initial_sparsity:
            raise ValueError(
                f"target_sparsity: {self.target_sparsity} is below initial_sparsity {self.initial_sparsity}"
            )
        for name in ("epochs", "batch_size", "prune_every"):
            _integer(name, getattr(self, name), 1)
        for name in ("prune_start_epoch", "prune_end_epoch", "seed", "val_size", "bn_recalibrate"):
            _integer(name, getattr(self, name), 0)
        if self.prune_end_epoch > self.epochs:
            raise ValueError(
                f"prune_end_epoch: {self.prune_end_epoch} is after training ends (epochs={self.epochs}); "
                f"it must be <= epochs"
            )
        if self.prune_start_epoch > self.prune_end_epoch:
            raise ValueError(
                f"prune_start_epoch: {self.prune_start_epoch} is after prune_end_epoch {self.prune_end_epoch}"
            )
        in_range("lr", self.lr, 0, float("inf"), low_open=True, high_open=True)
        in_range("momentum", self.momentum, 0, 1, high_open=True)
        at_least("weight_decay", self.weight_decay, 0)
        if not math.isfinite(self.weight_decay):
            raise ValueError(f"weight_decay: {self.weight_decay!r} must be a finite number >= 0")
        in_range("lr_gamma", self.lr_gamma, 0, 1, low_open=True)
        if not isinstance(self.lr_milestones, (list, tuple)):
            raise ValueError(f"lr_milestones: {self.lr_milestones!r} must be a list of fractions of the epochs, "
                             f"e.g. [0.5, 0.75]")
        object.__setattr__(self, "lr_milestones", tuple(self.lr_milestones))
        for m in self.lr_milestones:
            in_range("lr_milestones", m, 0, 1)
        device = self.device if isinstance(self.device, str) else ""
        if not (device in ("auto", "cpu", "cuda") or device.startswith("cuda:") and device[5:].isdigit()):
            raise ValueError(f"device: {self.device!r} is not one of auto, cpu, cuda, cuda:N")
        if isinstance(self.data_dir, os.PathLike):
            object.__setattr__(self, "data_dir", os.fspath(self.data_dir))
        if not isinstance(self.data_dir, str) or not self.data_dir:
            raise ValueError(f"data_dir: {self.data_dir!r} must be a directory path (a string)")
        if not isinstance(self.extra, dict):
            raise ValueError(f"extra: {self.extra!r} must be a mapping of labels")
        one_of("precision", self.precision, PRECISIONS)
        for name in ("nesterov", "download", "deterministic", "compile", "progress"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name}: {getattr(self, name)!r} must be true or false")
        for name in ("augment", "channels_last"):
            if getattr(self, name) is not None and not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name}: {getattr(self, name)!r} must be true, false or none")
        for knob in ("rate", "grad_window"):
            if getattr(self, knob) is not None and not knob_applies(self.recipe, knob):
                raise ValueError(f"{knob}: recipe {self.recipe!r} does not use it ({KNOB_USERS[knob]}); leave it unset")
        recipe = self.pruning_recipe()  # rate / grad_window are checked by the recipe
        if recipe.prunes and recipe.min_keep:
            sizes, shapes = layer_shapes(self.arch, SHAPES[self.dataset])
            check_feasible(sizes, floor_counts(sizes, recipe.min_keep), self.target_sparsity,
                           initial_counts(sizes, shapes, recipe, self.initial_sparsity))

    def pruning_recipe(self):
        overrides = {k: v for k, v in (("rate", self.rate), ("grad_window", self.grad_window)) if v is not None}
        return get_recipe(self.recipe, **overrides)

    def to_dict(self) -> dict:
        """Plain JSON types (tuples as lists), equal to what config.json holds."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def identity(self) -> dict:
        """The fields that name the run: not where data lives, whether a bar is drawn, which GPU runs it,
        or how its tensors are laid out in memory."""
        d = self.to_dict()
        for key in NOT_IDENTITY:
            d.pop(key)
        for key in ("val_size", "bn_recalibrate"):
            if not d[key]:  # off: the run ids made before the option existed stay valid
                d.pop(key)
        return d

    @property
    def run_id(self) -> str:
        digest = hashlib.sha1(json.dumps(self.identity(), sort_keys=True).encode()).hexdigest()[:10]
        return (f"{self.arch}-{self.dataset}-{self.recipe}-s{self.target_sparsity:g}-i{self.initial_sparsity:g}"
                f"-seed{self.seed}-{digest}")

    @classmethod
    def from_strings(cls, pairs: list[str], **base) -> "RunConfig":
        """Build from CLI ``key=value`` pairs, each value parsed as the field's type."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        hints = typing.get_type_hints(cls)
        values = dict(base)
        given = set()
        for pair in pairs:
            key, sep, raw = pair.partition("=")
            if not sep:
                raise ValueError(f"argument: {pair!r} is not of the form key=value")
            if key not in fields:
                raise ValueError(f"{key}: unknown field; fields are {', '.join(fields)}")
            if key in given:
                raise ValueError(f"{key}: given twice; give each field once")
            given.add(key)
            values[key] = parse_value(key, raw, hints[key])
        return cls(**values)

    @classmethod
    def from_dict(cls, d: dict) -> "RunConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"{unknown[0]}: unknown field; fields are {', '.join(sorted(names))}")
        return cls(**{k: tuple(v) if k in ("lr_milestones", "plugins") and isinstance(v, list) else v
                      for k, v in d.items()})


@functools.lru_cache(maxsize=None)
def layer_shapes(arch: str, input_shape: tuple[int, int, int] = (3, 32, 32)) -> tuple[dict[str, int], dict[str, tuple]]:
    """Sizes and shapes of an architecture's prunable weights, from a model built on the meta device (no
    memory, no data), so a config can be checked for feasibility before any work."""
    with torch.device("meta"):
        params = prunable_parameters(build_model(arch, input_shape=input_shape))
    return {n: p.numel() for n, p in params.items()}, {n: tuple(p.shape) for n, p in params.items()}


def load_plugins(plugins) -> tuple[str, ...]:
    """Import each plugin (a module name, or a path to a .py file, made absolute) once; a plugin registers
    its orders and recipes at import, in whichever process builds the config (a sweep's kernels too)."""
    if isinstance(plugins, str) or not isinstance(plugins, (list, tuple)):
        raise ValueError(f"plugins: {plugins!r} must be a list of module names or .py files")
    resolved = []
    for plugin in plugins:
        if not isinstance(plugin, str) or not plugin:
            raise ValueError(f"plugins: {plugin!r} is not a module name or a .py file")
        if plugin.endswith(".py"):
            path = Path(plugin).expanduser().resolve()
            if not path.is_file():
                raise ValueError(f"plugins: {plugin!r} is not a file")
            name = "fggp_plugin_" + hashlib.sha1(str(path).encode()).hexdigest()[:10]
            if name not in sys.modules:
                spec = importlib.util.spec_from_file_location(name, path)
                module = importlib.util.module_from_spec(spec)
                sys.modules[name] = module
                try:
                    spec.loader.exec_module(module)
                except Exception:
                    del sys.modules[name]
                    raise
            resolved.append(str(path))
        else:
            try:
                importlib.import_module(plugin)
            except ImportError as err:
                raise ValueError(f"plugins: cannot import {plugin!r} ({err})") from None
            resolved.append(plugin)
    return tuple(resolved)


KNOB_USERS = {"rate": "only two-step orders (gradient_first, magnitude_first, ...) read it",
              "grad_window": "only recipes that read gradients do"}


def knob_applies(recipe: str, knob: str) -> bool:
    """Whether the named recipe reads ``rate`` or ``grad_window``; an override it ignores would only
    give the same run another id."""
    r = get_recipe(recipe)
    return (r.prunes and get_order(r.order).two_step) if knob == "rate" else r.uses_gradient


def _integer(name, value, low):
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name}: {value!r} must be an integer >= {low}")


def parse_value(key: str, raw: str, hint):
    """'0.9' -> 0.9 for a float field, 'none' -> None where allowed, 'true' -> True, '0.5,0.75' -> tuple."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if raw.lower() in ("none", "null") and type(None) in options:
            return None
        hint = next(a for a in options if a is not type(None))
    kind = typing.get_origin(hint) or hint
    try:
        if kind is bool:
            if raw.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError
            return raw.lower() in ("true", "1", "yes")
        if kind is int:
            return int(raw)
        if kind is float:
            return float(raw)
        if kind is tuple:
            item = (typing.get_args(hint) or (float,))[0]
            return tuple(item(x.strip()) for x in raw.split(",") if x.strip())
        if kind is dict:
            return json.loads(raw)
        return raw
    except ValueError:
        raise ValueError(f"{key}: {raw!r} is not a valid {getattr(kind, '__name__', kind)}") from None
