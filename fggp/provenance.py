"""Which code made a run: a digest of the fggp package's own source, recorded in every result.

Why: the version number never changes between edits, and a sweep imports fggp afresh at every point, so a
point run after an edit to the package (or on another checkout) is made by other code with nothing to show
for it. ``source_digest`` names the code exactly; the report says when a folder's runs were made by more than
one (``fggp.report.views.overview``). It is not part of the run id: the same experiment run by other code is
the same point, and the report is where the difference is said.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent


def digest_of(package: Path) -> str:
    """SHA-256 (first 12 hex digits) over every ``.py`` file under ``package``, by relative path and bytes, in
    sorted order: the same files anywhere give the same digest, any edit, added or removed file another."""
    package = Path(package)
    h = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        h.update(path.relative_to(package).as_posix().encode() + b"\0")
        h.update(path.read_bytes() + b"\0")
    return h.hexdigest()[:12]


@functools.lru_cache(maxsize=1)
def source_digest() -> str:
    """``digest_of`` the fggp package this process imported (once per process: a sweep's every point is one)."""
    return digest_of(PACKAGE)


__all__ = ["source_digest", "digest_of"]
