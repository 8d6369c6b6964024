"""Fault injection for the resilience tests: ``FGGP_FAULT=point:n`` SIGKILLs the process at its n-th visit.

Points: ``step`` (after an optimizer step, so mid-epoch), ``prune`` (inside a pruning step, after the
new masks are chosen and before they are applied), ``checkpoint_write`` (a checkpoint's bytes are on
disk under a temporary name, not yet renamed), ``checkpoint_rotate`` (the old checkpoint was moved
aside, the new one is not written yet), ``epoch_end`` (the epoch's checkpoint is in place, its
metrics.jsonl row not yet written), ``notebook_executed`` (a sweep point's notebook ran, its executed copy is
not yet renamed into place). Unset, ``reach`` is one comparison.
"""

from __future__ import annotations

import os
import signal

_SPEC = os.environ.get("FGGP_FAULT")
_visits: dict[str, int] = {}


def reach(point: str) -> None:
    if _SPEC is None:
        return
    name, _, nth = _SPEC.partition(":")
    if name != point:
        return
    _visits[point] = _visits.get(point, 0) + 1
    if _visits[point] == int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
