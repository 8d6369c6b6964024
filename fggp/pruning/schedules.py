"""When to prune and to what sparsity, counted in optimizer steps (never rounded to epochs).

Steps are counted from 1: step t is the t-th completed optimizer step. Pruning happens every
``every`` steps inside [start, end] *and at end*, so the final target is reached exactly (the GraNet
code stops one step short). A one-shot schedule prunes once, at ``end``: train dense, prune, fine-tune.

``progress="pruning_steps"`` reproduces GraNet's code instead: it prunes at the multiples of ``every``
from ``start`` on, measures progress in pruning-step indices ``int(t / every)`` and stops one index
before ``int(end / every)``, so it ends just short of the target (0.89997 for 0.9 over 31 indices).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .validate import at_least, in_range, one_of

SCHEDULES = ("cubic", "linear", "one_shot")
PROGRESS = ("steps", "pruning_steps")
RATE_SCHEDULES = ("fixed", "linear", "cosine")


def cubic_sparsity(step: float, start: float, end: float, initial: float, final: float, power: float = 3) -> float:
    """Zhu & Gupta (2017): s(t) = s_f + (s_i - s_f) (1 - (t - t0) / (t1 - t0))^power inside [t0, t1]."""
    if step < start:
        return float(initial)
    if step >= end:
        return float(final)
    progress = (step - start) / (end - start)
    return float(final + (initial - final) * (1.0 - progress) ** power)


@dataclass(frozen=True)
class SparsitySchedule:
    """Target sparsity per step; ``kind`` is cubic, linear (power 1) or one_shot."""

    initial: float
    final: float
    start: int
    end: int
    every: int = 1
    kind: str = "cubic"
    power: float = 3.0
    progress: str = "steps"

    def __post_init__(self):
        one_of("schedule", self.kind, SCHEDULES)
        one_of("progress", self.progress, PROGRESS)
        in_range("initial_sparsity", self.initial, 0, 1, high_open=True)
        in_range("target_sparsity", self.final, 0, 1, high_open=True)
        if self.final < self.initial:
            raise ValueError(
                f"target_sparsity: {self.final} is below initial_sparsity {self.initial}; it must be >= it"
            )
        for field in ("start", "end", "every"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{field}: {value!r} must be an integer number of optimizer steps")
        at_least("start", self.start, 0)
        at_least("every", self.every, 1)
        if self.end < self.start:
            raise ValueError(f"end: step {self.end} is before start step {self.start}; it must be >= start")
        if self.end < 1 and self.final > self.initial:
            raise ValueError("end: pruning must end at step >= 1 (steps count completed optimizer steps)")
        at_least("power", self.power, 0)
        if self.power == 0:
            raise ValueError("power: must be > 0")
        if self.progress == "pruning_steps":
            if self.kind == "one_shot":
                raise ValueError("progress: 'pruning_steps' applies to the cubic and linear schedules, not one_shot")
            if self.final > self.initial and self._indices()[1] <= self._indices()[0]:
                raise ValueError(
                    f"progress: 'pruning_steps' needs int(end / every) > int(start / every) "
                    f"(end={self.end}, start={self.start}, every={self.every})"
                )

    def _indices(self) -> tuple[int, int]:
        """GraNet's first and one-past-last pruning-step index."""
        return self.start // self.every, self.end // self.every

    def sparsity(self, step: int) -> float:
        """The target at ``step``; with pruning-step progress, the one of the latest pruning step."""
        if self.kind == "one_shot":
            return self.final if step >= self.end else self.initial
        power = 1.0 if self.kind == "linear" else self.power
        if self.progress == "pruning_steps":
            first, last = self._indices()
            if step < self.start or step < self.every * first or step < 1:
                return float(self.initial)
            index = min(step // self.every, last - 1)
            return cubic_sparsity(index, first, last, self.initial, self.final, power)
        return cubic_sparsity(step, self.start, self.end, self.initial, self.final, power)

    def is_pruning_step(self, step: int) -> bool:
        if step < 1 or self.final == self.initial:
            return False
        if self.kind == "one_shot":
            return step == self.end
        if self.progress == "pruning_steps":
            return step >= self.start and step % self.every == 0 and step // self.every <= self._indices()[1] - 1
        return step == self.end or (self.start <= step < self.end and (step - self.start) % self.every == 0)

    def is_update_step(self, step: int, total: int) -> bool:
        """Whether drop-and-regrow runs at ``step``: every pruning step, and every ``every`` steps after the
        pruning window until ``total`` (GraNet's ``Masking.step`` keeps regrowing until training ends)."""
        if self.is_pruning_step(step):
            return True
        if step < 1 or step > total or step < self.start or self.kind == "one_shot":
            return False
        if self.progress == "pruning_steps":
            return step % self.every == 0
        return step > self.end and (step - self.start) % self.every == 0

    def update_steps(self, total: int) -> list[int]:
        out, t = [], self.next_update_step(1, total)
        while t is not None:
            out.append(t)
            t = self.next_update_step(t + 1, total)
        return out

    def next_update_step(self, step: int, total: int) -> int | None:
        """The first drop-and-regrow step >= ``step`` (None when there is none left)."""
        found = [t for t in (self.next_pruning_step(step), self._next_regular(step, total)) if t is not None]
        return min(found) if found else None

    def _next_regular(self, step: int, total: int) -> int | None:
        """The first update step >= ``step`` that is not a pruning step's turn (after the window)."""
        if self.kind == "one_shot":
            return None
        if self.progress == "pruning_steps":
            t = max(step, self.start, 1)
            t += (-t) % self.every
        else:
            t = max(step, self.end + 1, self.start, 1)
            t += (self.start - t) % self.every
        return t if t <= total else None

    def pruning_steps(self) -> list[int]:
        return [t for t in self._candidates() if self.is_pruning_step(t)]

    def next_pruning_step(self, step: int) -> int | None:
        """The first pruning step >= ``step`` (None when there is none left)."""
        for t in self._candidates(from_step=step):
            if self.is_pruning_step(t):
                return t
        return None

    def _candidates(self, from_step: int = 1):
        if self.kind == "one_shot":
            yield from ([self.end] if self.end >= from_step else [])
            return
        if self.progress == "pruning_steps":
            t = max(from_step, self.start, 1)
            t += (-t) % self.every
            while t // self.every <= self._indices()[1] - 1:
                yield t
                t += self.every
            return
        t = max(from_step, self.start)
        offset = (t - self.start) % self.every
        t += (self.every - offset) % self.every
        while t < self.end:
            yield t
            t += self.every
        if self.end >= from_step:
            yield self.end


def annealed_rate(index: int, count: int, start: float, end: float, kind: str) -> float:
    """Rate of the ``index``-th of ``count`` pruning steps: fixed (start), or annealed start -> end."""
    one_of("rate_schedule", kind, RATE_SCHEDULES)
    if kind == "fixed":
        return float(start)
    progress = min(max(index / (count - 1), 0.0), 1.0) if count > 1 else 0.0
    if kind == "cosine":
        progress = 0.5 * (1.0 - math.cos(math.pi * progress))
    return float(start + (end - start) * progress)


def cosine_decay(step: int, total: int, initial: float, floor: float = 0.0) -> float:
    """GraNet's drop fraction, ``CosineDecay(initial, T, eta_min=floor)``:
    floor + (initial - floor) (1 + cos(pi t / T)) / 2, clamped at T (GraNet's floor is 0.005)."""
    if total <= 0:
        return float(initial)
    return float(floor + (initial - floor) * 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total)))
