"""Papermill parameters, checked in one line before a notebook does any work.

``check_parameters`` is generic, for any notebook that papermill parameterizes: call it in the first code cell
after the ``parameters`` cell, with the names that cell defines and the types they take::

    from fggp.parameters import check_parameters
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
from collections.abc import Iterable, Mapping

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


def check_parameters(namespace: dict, expected: Mapping[str, type | tuple[type, ...] | None] | Iterable[str]) -> list[str]:
    """Refuse a parameter the notebook does not define, and a defined one of the wrong type (``None`` in
    ``expected``, or ``expected`` a list of names: any type; a float parameter also takes an int, an int one
    never a bool). ``namespace`` is the notebook's ``globals()``. Returns the names papermill injected ([] when
    run by hand). Every notebook of the kit calls it: 01 and 02 through their ``check_notebook``, 03 directly."""
    if not isinstance(expected, Mapping):
        expected = dict.fromkeys(expected)
    injected = _injected_names(namespace.get("In")) or []
    for name in injected:
        if name not in expected:
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


__all__ = ["check_parameters", "INJECTED_HEADER"]
