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

from ..data import DATASETS, SHAPES, dataset_info
from ..models import MODELS, build_model
from ..pruning import RECIPES, check_feasible, floor_counts, get_order, get_recipe, initial_counts, prunable_parameters
from ..pruning.pattern import check_layers, pattern_sparsity, pattern_target
from ..pruning.validate import Infeasible, at_least, in_range, one_of

PRECISIONS = ("auto", "fp32", "bf16")
# Training-split sizes of the built-in datasets, known without loading them, so that a val_size they cannot
# hold is refused with the rest of the config (a grid before any point runs). A registered dataset's size
# is known only once it loads; fggp.data.with_validation checks it then, before the run directory exists.
TRAIN_SIZES = {"digits": 1437, "synthetic": 2000, "cifar10": 50000, "fashion_mnist": 60000, "mnist": 60000}
OPTIMIZERS = ("sgd", "adamw")
LR_SCHEDULES = ("step", "cosine")
NOT_IDENTITY = ("data_dir", "download", "progress", "device", "channels_last", "plugins")
# Fields added after runs were made: at these values they are left out of the identity, so the run ids made
# before each option existed stay valid (val_size and bn_recalibrate at 0 likewise).
LATER_FIELDS = {"val_size": 0, "bn_recalibrate": 0, "optimizer": "sgd", "betas": [0.9, 0.999], "eps": 1e-8,
                "lr_schedule": "step", "warmup_epochs": 0, "include": [], "exclude": [], "pattern": None,
                "train_subset": 0}
# Digest of each imported plugin's source, by its resolved name: part of the identity of a run that uses it,
# so an edited model, dataset or criterion is a new run and never "already completed" with the old result.
PLUGIN_DIGESTS: dict[str, str] = {}


@dataclass(frozen=True)
class RunConfig:
    arch: str = "vgg19"
    dataset: str = "cifar10"
    recipe: str = "fggp"
    target_sparsity: float = 0.9
    initial_sparsity: float = 0.0
    rate: float | None = None  # None: the recipe's own rate
    grad_window: int | None = None  # None: the recipe's own
    pattern: str | None = None  # "N:M" (e.g. "2:4"): every group of M consecutive weights ends with N; target 1 - N/M
    epochs: int = 160
    batch_size: int = 128
    lr: float = 0.1
    optimizer: str = "sgd"  # sgd (the paper's) or adamw
    momentum: float = 0.9  # sgd only
    nesterov: bool = True  # sgd only
    betas: tuple[float, ...] = (0.9, 0.999)  # adamw only
    eps: float = 1e-8  # adamw only
    weight_decay: float = 5e-4  # sgd: L2 in the gradient; adamw: decoupled
    lr_schedule: str = "step"  # step: lr x lr_gamma at each milestone; cosine: to 0 at the last step
    lr_milestones: tuple[float, ...] = (0.5, 0.75)  # fractions of the epochs: 80 and 120 of 160 (step only)
    lr_gamma: float = 0.1  # step only
    warmup_epochs: int = 0  # linear warm-up of the lr over the first epochs (either schedule)
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
    train_subset: int = 0  # train on this many of the rest (stratified, one fixed subset for every seed); 0: all
    compile: bool = False
    bn_recalibrate: int = 0  # >0: re-estimate BatchNorm statistics on this many train batches before each evaluation
    progress: bool = True
    extra: dict = field(default_factory=dict)  # free-form labels; part of the run's identity
    plugins: tuple[str, ...] = ()  # modules or .py files imported first: they register models, data, orders, recipes
    include: tuple[str, ...] = ()  # globs over named_parameters() to prune; empty: the default layers' weights
    exclude: tuple[str, ...] = ()  # globs taken out of the prunable set

    def __post_init__(self):
        object.__setattr__(self, "plugins", load_plugins(self.plugins))
        one_of("arch", self.arch, MODELS)
        one_of("dataset", self.dataset, DATASETS)
        one_of("recipe", self.recipe, RECIPES)
        in_range("target_sparsity", self.target_sparsity, 0, 1, high_open=True)
        in_range("initial_sparsity", self.initial_sparsity, 0, 1, high_open=True)
        if self.recipe == "dense":  # the dense baseline is one run whatever sparsity (or pattern) a grid asks for
            object.__setattr__(self, "target_sparsity", 0.0)
            object.__setattr__(self, "initial_sparsity", 0.0)
            object.__setattr__(self, "pattern", None)
        if self.pattern is not None:
            _check_pattern(self)
        if self.target_sparsity < self.initial_sparsity:
            raise ValueError(
                f"target_sparsity: {self.target_sparsity} is below initial_sparsity {self.initial_sparsity}"
            )
        for name in ("epochs", "batch_size", "prune_every"):
            _integer(name, getattr(self, name), 1)
        for name in ("prune_start_epoch", "prune_end_epoch", "seed", "val_size", "train_subset", "bn_recalibrate"):
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
        one_of("optimizer", self.optimizer, OPTIMIZERS)
        one_of("lr_schedule", self.lr_schedule, LR_SCHEDULES)
        if not isinstance(self.betas, (list, tuple)) or len(self.betas) != 2:
            raise ValueError(f"betas: {self.betas!r} must be two numbers in [0, 1), e.g. 0.9,0.999")
        object.__setattr__(self, "betas", tuple(self.betas))
        for b in self.betas:
            in_range("betas", b, 0, 1, high_open=True)
        in_range("eps", self.eps, 0, 1, low_open=True)
        if self.optimizer != "adamw":
            for name, value in (("betas", list(self.betas)), ("eps", self.eps)):
                if value != LATER_FIELDS[name]:
                    raise ValueError(f"{name}: only optimizer=adamw reads it (optimizer is {self.optimizer!r}); "
                                     f"leave it unset")
        _integer("warmup_epochs", self.warmup_epochs, 0)
        if self.warmup_epochs > self.epochs:
            raise ValueError(f"warmup_epochs: {self.warmup_epochs} is longer than training (epochs={self.epochs})")
        for name in ("include", "exclude"):
            value = getattr(self, name)
            if isinstance(value, str) or not isinstance(value, (list, tuple)) or not all(
                    isinstance(v, str) and v for v in value):
                raise ValueError(f"{name}: {value!r} must be a list of glob patterns over parameter names, "
                                 f"e.g. features.*.weight")
            object.__setattr__(self, name, tuple(value))
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
        if recipe.prunes and self.target_sparsity > self.initial_sparsity and self.prune_end_epoch < 1:
            raise ValueError(f"prune_end_epoch: {self.prune_end_epoch} leaves no epoch to prune in; recipe "
                             f"{self.recipe!r} needs prune_end_epoch >= 1 (and <= epochs={self.epochs})")
        if self.val_size and self.dataset in TRAIN_SIZES:  # registered datasets: checked when they load
            n = TRAIN_SIZES[self.dataset]
            classes = dataset_info(self.dataset)["num_classes"]
            if not classes <= self.val_size <= n - classes:
                raise ValueError(f"val_size: {self.val_size} must be 0 (no validation split) or in [{classes}, "
                                 f"{n - classes}] for the {n} training images of {self.dataset} (a split "
                                 f"stratified by its {classes} classes)")
        if self.train_subset and self.dataset in TRAIN_SIZES:
            n = TRAIN_SIZES[self.dataset] - self.val_size
            classes = dataset_info(self.dataset)["num_classes"]
            if not classes <= self.train_subset <= n:
                raise ValueError(f"train_subset: {self.train_subset} must be 0 (all) or in [{classes}, {n}] for the "
                                 f"{n} training images of {self.dataset} left after val_size={self.val_size}")
        if recipe.prunes and (recipe.min_keep or self.include or self.exclude or self.pattern):  # up front
            sizes, shapes = layer_shapes(self.arch, tuple(SHAPES[self.dataset]), self.include, self.exclude)
            if self.pattern:
                check_layers(shapes, self.pattern)
            if recipe.min_keep:
                check_feasible(sizes, floor_counts(sizes, recipe.min_keep), self.target_sparsity,
                               initial_counts(sizes, shapes, recipe, self.initial_sparsity))

    def pruning_recipe(self):
        overrides = {k: v for k, v in (("rate", self.rate), ("grad_window", self.grad_window),
                                       ("pattern", self.pattern)) if v is not None}
        return get_recipe(self.recipe, **overrides)

    def to_dict(self) -> dict:
        """Plain JSON types (tuples as lists), equal to what config.json holds."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def identity(self) -> dict:
        """The fields that name the run: not where data lives, whether a bar is drawn, which GPU runs it,
        or how its tensors are laid out in memory."""
        return identity_of(self.to_dict())

    @property
    def run_id(self) -> str:
        return run_id_of(self.identity())

    @classmethod
    def for_arch(cls, arch: str, **fields) -> "RunConfig":
        """A config that starts from the training fields the architecture's registry entry recommends
        (``fggp.models.recommended_config``; vit_tiny: AdamW, cosine, warm-up), then ``fields``."""
        from ..models import recommended_config

        one_of("arch", arch, MODELS)
        return cls(**{**recommended_config(arch), **fields, "arch": arch})

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
        return cls(**{k: tuple(v) if k in TUPLE_FIELDS and isinstance(v, list) else v for k, v in d.items()})


TUPLE_FIELDS = ("lr_milestones", "plugins", "betas", "include", "exclude")


def identity_of(d: dict) -> dict:
    """The identity of a config given as a plain dict (a RunConfig's, or a grid point RunConfig refused)."""
    d = dict(d)
    for key in NOT_IDENTITY:
        if key != "plugins":
            d.pop(key, None)
    for key, default in LATER_FIELDS.items():
        if key in d and d[key] == default:
            d.pop(key)
    plugins = d.pop("plugins", None) or ()
    if plugins:  # the code, not where it lives: the same file elsewhere is the same run
        d["plugin_digests"] = [PLUGIN_DIGESTS.get(p, "not imported") for p in plugins]
    return d


def run_id_of(identity: dict) -> str:
    d = identity
    digest = hashlib.sha1(json.dumps(d, sort_keys=True).encode()).hexdigest()[:10]
    return (f"{d['arch']}-{d['dataset']}-{d['recipe']}-s{d['target_sparsity']:g}-i{d['initial_sparsity']:g}"
            f"-seed{d['seed']}-{digest}")


@functools.lru_cache(maxsize=None)
def layer_shapes(arch: str, input_shape: tuple[int, ...] = (3, 32, 32), include: tuple[str, ...] = (),
                 exclude: tuple[str, ...] = ()) -> tuple[dict[str, int], dict[str, tuple]]:
    """Sizes and shapes of an architecture's prunable weights, from a model built on the meta device (no
    memory, no data), so a config can be checked for feasibility before any work. A registered model whose
    constructor cannot run on the meta device is built on the CPU instead."""
    try:
        with torch.device("meta"):
            model = build_model(arch, input_shape=input_shape)
    except ValueError:
        raise
    except Exception:
        model = build_model(arch, input_shape=input_shape)
    params = prunable_parameters(model, include=include or None, exclude=exclude)
    return {n: p.numel() for n, p in params.items()}, {n: tuple(p.shape) for n, p in params.items()}


def load_plugins(plugins) -> tuple[str, ...]:
    """Import each plugin (a module name, or a path to a .py file, made absolute) once; a plugin registers
    its models, datasets, orders and recipes at import, in whichever process builds the config (a sweep's
    kernels too). The digest of the source it imported goes into the identity of the runs that use it."""
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
                source = path.read_bytes()
                spec = importlib.util.spec_from_file_location(name, path)
                module = importlib.util.module_from_spec(spec)
                sys.modules[name] = module
                try:
                    spec.loader.exec_module(module)
                except Exception as err:
                    del sys.modules[name]
                    raise ValueError(f"plugins: {plugin!r} failed to import ({_where(err, path)})") from err
                PLUGIN_DIGESTS[str(path)] = hashlib.sha1(source).hexdigest()[:12]
            resolved.append(str(path))
        else:
            try:
                module = importlib.import_module(plugin)
            except ImportError as err:
                raise ValueError(f"plugins: cannot import {plugin!r} ({err})") from None
            except Exception as err:
                raise ValueError(f"plugins: {plugin!r} failed to import ({_where(err, None)})") from err
            origin = getattr(module, "__file__", None)
            if plugin not in PLUGIN_DIGESTS:
                PLUGIN_DIGESTS[plugin] = (hashlib.sha1(Path(origin).read_bytes()).hexdigest()[:12]
                                          if origin and Path(origin).is_file() else "no source file")
            resolved.append(plugin)
    return tuple(resolved)


def _where(err: Exception, path: Path | None) -> str:
    """The error of a failing plugin in one line, with the plugin's own line where the traceback has it."""
    line = getattr(err, "lineno", None) if isinstance(err, SyntaxError) else None
    if line is None and path is not None:
        tb = err.__traceback__
        while tb is not None:
            if Path(tb.tb_frame.f_code.co_filename) == path:
                line = tb.tb_lineno
            tb = tb.tb_next
    text = str(err).splitlines()[0] if str(err) else ""
    return f"{type(err).__name__}: {text}" + (f", line {line}" if line else "")


KNOB_USERS = {"rate": "only two-step orders (gradient_first, magnitude_first, ...) read it",
              "grad_window": "only recipes that read gradients do"}


def knob_applies(recipe: str, knob: str) -> bool:
    """Whether the named recipe reads ``rate`` or ``grad_window``; an override it ignores would only
    give the same run another id."""
    r = get_recipe(recipe)
    return (r.prunes and get_order(r.order).two_step) if knob == "rate" else r.uses_gradient


def _check_pattern(c: "RunConfig") -> None:
    """An N:M run ends at 1 - N/M exactly: another target is refused rather than replaced, and a recipe that
    cannot keep its groups (regrowth, floors) makes the point not applicable."""
    pattern_sparsity(c.pattern)  # a malformed pattern is an error ...
    try:
        get_recipe(c.recipe, pattern=c.pattern)
    except ValueError as err:  # ... a recipe that cannot hold groups (GraNet's regrowth, Global MP's floors) is n/a
        raise Infeasible(f"{str(err).splitlines()[0]} (recipe {c.recipe})") from None
    pattern_target(c.pattern, c.target_sparsity, c.initial_sparsity)  # the Pruner's own check, in its words


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
