"""One-line ValueErrors that name the field and what it accepts, raised before any work starts."""

from __future__ import annotations

from collections.abc import Iterable


class Infeasible(ValueError):
    """A valid request that cannot be met: per-layer floors keep more weights than the target allows.

    A subclass of ValueError so a single run still fails in one line; a sweep catches it to report
    such a grid point as "not applicable" instead of failing it.
    """


def one_of(field: str, value, allowed: Iterable) -> None:
    allowed = list(allowed)
    if value not in allowed:
        raise ValueError(f"{field}: {value!r} is not one of {', '.join(map(str, allowed))}")


def in_range(field: str, value, low, high, *, low_open=False, high_open=False) -> None:
    """Check low <= value <= high (or strict where *_open); the message spells the interval."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value == value
    if ok:
        ok = (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
    if not ok:
        interval = f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
        raise ValueError(f"{field}: {value!r} is outside {interval}")


def at_least(field: str, value, low) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= low:
        raise ValueError(f"{field}: {value!r} must be a number >= {low}")
