"""Architectures by name, the way torchvision and timm have them: register a builder once, build it anywhere.

A builder is ``build(num_classes=..., input_shape=...) -> nn.Module``, ``input_shape`` being the shape of ONE
sample of any rank (``(3, 32, 32)`` images, ``(20,)`` token ids, ``(64,)`` features), so a run, a sweep or a
plugin file can name the user's own model exactly as it names the zoo's. Names are checked when registered,
so a typo or a clash fails at import, not half-way through a sweep.
"""

import re
from numbers import Integral
from typing import Any, Callable

from torch import nn

Builder = Callable[..., nn.Module]

# The registry's storage, public for the code that does ``one_of("arch", arch, MODELS)`` or ``sorted(MODELS)``.
MODELS: dict[str, Builder] = {}
# name -> training-field defaults that suit the architecture (only for the names that gave some).
RECOMMENDED: dict[str, dict[str, Any]] = {}

_NAME = re.compile(r"[A-Za-z0-9_.\-]+")


def _check_name(name: object) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(f"arch: {name!r} is not a valid name (a non-empty string of letters, digits, _, - and .)")
    if name in MODELS:
        raise ValueError(f"arch: {name!r} is already registered (choose another name)")
    return name


def register_model(name: str, build: Builder | None = None, *, recommended: dict[str, Any] | None = None):
    """Register ``build`` under ``name``; without ``build``, a decorator that registers the function it wraps.

    ``recommended`` holds training-field defaults that suit the architecture (an optimizer, a learning rate),
    kept for ``recommended_config(name)``. A taken name, a bad name or a builder that cannot be called is a
    one-line ValueError, so two plugins cannot silently replace each other's model.
    """
    _check_name(name)
    if recommended is not None and (not isinstance(recommended, dict)
                                    or not all(isinstance(k, str) for k in recommended)):
        raise ValueError(f"arch: {name!r} recommended must be a dict of field names to values, "
                         f"got {recommended!r}")

    def register(fn: Builder) -> Builder:
        _check_name(name)  # again: the decorator may run long after register_model(name) was called
        if not callable(fn):
            raise ValueError(f"arch: {name!r} build must be callable (num_classes=, input_shape=) -> nn.Module, "
                             f"got {type(fn).__name__}")
        MODELS[name] = fn
        if recommended:
            RECOMMENDED[name] = dict(recommended)
        return fn

    return register if build is None else register(build)


def list_models() -> list[str]:
    """Every registered name, sorted."""
    return sorted(MODELS)


def recommended_config(name: str) -> dict[str, Any]:
    """A copy of the training-field defaults registered with ``name`` (``{}`` when it gave none)."""
    _known(name)
    return dict(RECOMMENDED.get(name, {}))


def _known(name: object) -> None:
    if not isinstance(name, str) or name not in MODELS:
        raise ValueError(f"arch: {name!r} is not one of {', '.join(sorted(MODELS))}")


def _positive_ints(input_shape: object) -> tuple[int, ...] | None:
    """A tuple or list of positive integers (numpy's too) as a tuple of ints; None for anything else."""
    if not isinstance(input_shape, (tuple, list)):
        return None
    if not all(isinstance(d, Integral) and not isinstance(d, bool) and d >= 1 for d in input_shape):
        return None
    return tuple(int(d) for d in input_shape)


def _sample_shape(input_shape: object) -> tuple[int, ...]:
    """One sample's shape as a tuple of positive ints (a list is accepted, a string is not)."""
    shape = _positive_ints(input_shape)
    if not shape:
        raise ValueError(f"input_shape: {input_shape!r} must be positive integers, one sample's shape "
                         "(e.g. (3, 32, 32) for images, (20,) for token ids)")
    return shape


def get_model(name: str, num_classes: int = 10, input_shape: tuple[int, ...] = (3, 32, 32)) -> nn.Module:
    """Build the registered architecture ``name`` for samples of ``input_shape``; bad input is a one-line ValueError."""
    _known(name)
    shape = _sample_shape(input_shape)
    model = MODELS[name](num_classes=num_classes, input_shape=shape)
    if not isinstance(model, nn.Module):
        raise ValueError(f"arch: {name!r} build returned a {type(model).__name__}, not an nn.Module")
    return model


build_model = get_model


def image_shape(input_shape: tuple[int, ...], arch: str) -> tuple[int, int, int]:
    """``input_shape`` as ``(channels, height, width)``, for builders that only take images."""
    shape = _positive_ints(input_shape)
    if shape is None or len(shape) != 3:
        raise ValueError(f"input_shape: {input_shape!r} must be three positive integers (channels, height, width) "
                         f"for {arch}")
    return shape  # type: ignore[return-value]
