"""Inputs refused before any work, in one line that names the field: a misspelt path or parameter would
otherwise give a report of nothing that looks like a result ("No runs found"). Notebook 03's parameters are
checked by ``fggp.parameters.check_parameters`` (also ``fggp.report.check_parameters``), as 01's and 02's are.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..parameters import check_parameters  # re-exported: fggp.report.check_parameters, as notebook 03 imports it
from .loading import NO_RUNS_HINT, has_runs


def _path(value, field: str) -> Path:
    if not isinstance(value, (str, os.PathLike)) or not str(value):
        raise ValueError(f"{field}: must be a path (a non-empty string), not {type(value).__name__} {value!r}")
    return Path(value)


def check_runs_dir(runs_dir) -> Path:
    """``runs_dir`` as a Path, refused unless it is a folder holding at least one run (a directory with
    config.json or result.json) or a sweep.json with points: a misspelt or empty one is not a report."""
    path = _path(runs_dir, "runs_dir")
    if not path.exists():
        raise ValueError(f"runs_dir: {str(path)!r} does not exist")
    if not path.is_dir():
        raise ValueError(f"runs_dir: {str(path)!r} is a file; it must be a directory")
    if not has_runs(path):
        raise ValueError(f"runs_dir: {str(path)!r} holds no runs (no folder with config.json or result.json, no "
                         f"sweep.json points): {NO_RUNS_HINT.replace('`', '')}")
    return path


def check_report_dir(report_dir) -> Path:
    """``report_dir`` as a Path, refused when it is an existing file (it must be a folder, made if absent)."""
    path = _path(report_dir, "report_dir")
    if path.exists() and not path.is_dir():
        raise ValueError(f"report_dir: {str(path)!r} is a file; it must be a directory")
    return path
