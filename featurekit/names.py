"""Name rules shared by every definition, and safe quoting for SQL identifiers.

Entity, join-key, view and feature names must match ``^[A-Za-z_][A-Za-z0-9_]{0,62}$``, may not
start with the reserved prefix ``__fk`` (featurekit's own columns and aliases), and must be unique
case-insensitively, because DuckDB identifiers are case-insensitive even when quoted. View names
may not start with ``sqlite_`` either: they name online tables, and SQLite reserves those.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from featurekit.errors import InvalidNameError

NAME_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
RESERVED_PREFIX = "__fk"
# A view's online table is named after it, and SQLite reserves table names starting with this.
RESERVED_VIEW_PREFIX = "sqlite_"


def view_name_problem(name: object, what: str) -> str | None:
    """:func:`name_problem` plus the rule for view names (they name online tables)."""
    problem = name_problem(name, what)
    if problem is None and isinstance(name, str) and name.lower().startswith(RESERVED_VIEW_PREFIX):
        return f"{what} name {name!r} starts with {RESERVED_VIEW_PREFIX!r}, which SQLite reserves; rename it"
    return problem


def name_problem(name: object, what: str) -> str | None:
    """Return why ``name`` is not a valid ``what`` name, or ``None`` when it is valid."""
    if not isinstance(name, str):
        return f"{what} name must be a string, got {type(name).__name__} {name!r}"
    if not NAME_PATTERN.fullmatch(name):
        reason = "is longer than 63 characters" if len(name) > 63 else "has characters other than letters, digits and _"
        return (
            f"{what} name {name!r} {reason}; names must match ^[A-Za-z_][A-Za-z0-9_]{{0,62}}$ "
            f"(rename it, e.g. {_suggest(name)!r})"
        )
    if name.lower().startswith(RESERVED_PREFIX):
        return f"{what} name {name!r} starts with the reserved prefix {RESERVED_PREFIX!r}; rename it"
    return None


def validate_name(name: object, what: str) -> str:
    """Return ``name`` if valid, else raise :class:`InvalidNameError`."""
    problem = name_problem(name, what)
    if problem is not None:
        raise InvalidNameError([problem])
    assert isinstance(name, str)
    return name


def case_clashes(names: Iterable[str]) -> list[list[str]]:
    """Groups of two or more names that are equal ignoring case (or exactly equal)."""
    groups: dict[str, list[str]] = {}
    for name in names:
        groups.setdefault(name.lower(), []).append(name)
    return [group for group in groups.values() if len(group) > 1]


def quote(identifier: str) -> str:
    """Quote an identifier for DuckDB or SQLite; embedded quotes are doubled."""
    if "\x00" in identifier:
        raise InvalidNameError([f"identifier {identifier!r} contains a NUL character"])
    return '"' + identifier.replace('"', '""') + '"'


def _suggest(name: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9_]", "_", name)[:63] or "_"
    return cleaned if not cleaned[0].isdigit() else "_" + cleaned[:62]
