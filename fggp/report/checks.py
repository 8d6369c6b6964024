"""Inputs refused before any work, in one line that names the field: a misspelt path or parameter would
otherwise give a report of nothing that looks like a result ("No runs found").

``check_parameters`` is generic, for any notebook that papermill parameterizes: call it in the first code cell
after the ``parameters`` cell, with the names that cell defines and the types they take::

    from fggp.report import check_parameters
    check_parameters(globals(), {"runs_dir": str, "report_dir": str})

papermill injects ``-p NAME VALUE`` as a cell of plain assignments under a ``# Parameters`` comment, right after
the parameters cell, and warns (only warns) about a name the notebook does not define. IPython keeps the source
of every executed cell in ``In``, so the check reads the injected cell from there and refuses any name it
assigns that is not expected; it then checks each expected value's type. Run by hand (no injected cell), only
the types are checked. Reading ``In`` rather than the namespace means variables made by later cells, when a
notebook is run again in the same kernel, are never mistaken for parameters.
"""

from __future__ import annotations

import ast
import difflib
import os
from collections.abc import Mapping
from pathlib import Path

from .loading import NO_RUNS_HINT, has_runs

INJECTED_HEADER = "# Parameters"  # papermill's comment on its injected cell (papermill.parameterize)


def _injected_names(history) -> list[str] | None:
    """The names the latest papermill-injected cell in ``history`` (IPython's ``In``) assigns; None if none ran."""
    for source in reversed(list(history or [])):
        if not isinstance(source, str) or source.lstrip().split("\n", 1)[0].strip() != INJECTED_HEADER:
            continue
        try:
            body = ast.parse(source).body
        except SyntaxError:
            continue
        if body and all(isinstance(node, ast.Assign) for node in body):
            return [t.id for node in body for t in node.targets if isinstance(t, ast.Name)]
    return None


def _type_names(types) -> str:
    types = types if isinstance(types, tuple) else (types,)
    return " or ".join("None" if t is type(None) else t.__name__ for t in types)


def check_parameters(namespace: dict, expected: Mapping[str, type | tuple[type, ...] | None]) -> list[str]:
    """Refuse a parameter the notebook does not define, and a defined one of the wrong type (``None`` in
    ``expected``: any type; a float parameter also takes an int, an int one never a bool). ``namespace`` is
    the notebook's ``globals()``. Returns the names papermill injected ([] when run by hand)."""
    injected = _injected_names(namespace.get("In")) or []
    for name in injected:
        if name not in expected:  # worded as fggp.viz.runs.check_parameters words it for notebooks 01 and 02
            close = difflib.get_close_matches(name, sorted(expected), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ValueError(f"{name}: not a parameter of this notebook{hint}; its parameters are "
                             f"{', '.join(sorted(expected))}")
    for name, types in expected.items():
        if name not in namespace:
            raise ValueError(f"{name}: the parameters cell did not define it")
        if types is None:
            continue
        value = namespace[name]
        allowed = types if isinstance(types, tuple) else (types,)
        if float in allowed and int not in allowed:
            allowed = (*allowed, int)
        if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
            raise ValueError(f"{name}: must be {_type_names(types)}, not {type(value).__name__} {value!r}")
    return injected


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
