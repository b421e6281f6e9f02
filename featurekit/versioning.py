"""Versions from code: a view's version changes exactly when what it computes may change.

The *code hash* covers the function's normalized source (the AST with docstrings, comments,
decorators and formatting stripped) plus, transitively, the helper functions and module-level
constants of the repo that it names. The *fingerprint* adds the decorator arguments that change
data (entity keys, TTL, source definition) and the fingerprints of what the view depends on.
Metadata (description, tags, owner) is left out, so editing it does not create a new data version.
"""

from __future__ import annotations

import ast
import hashlib
import inspect
import json
import textwrap
import types
from collections.abc import Callable
from typing import Any

_CONSTANT_TYPES = (int, float, str, bytes, bool, type(None))


def function_source(function: Callable[..., Any]) -> str:
    """The function's source text as written (for display and diffs)."""
    try:
        return textwrap.dedent(inspect.getsource(function))
    except (OSError, TypeError):
        return f"# source of {getattr(function, '__qualname__', function)!r} is not available\n"


def _strip(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Module)):
            body = node.body
            if (
                body
                and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)
            ):
                node.body = body[1:] or [ast.Pass()]
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            node.decorator_list = []
    return tree


def _parsed(function: Callable[..., Any]) -> tuple[str, ast.AST | None]:
    """The function's source and its syntax tree (None when the source does not parse on its own)."""
    source = function_source(function)
    try:
        return source, ast.parse(source)
    except SyntaxError:
        return source, None


def _is_repo_function(obj: object, home_module: str) -> bool:
    return isinstance(obj, types.FunctionType) and getattr(obj, "__module__", None) == home_module


def code_hash(function: Callable[..., Any]) -> str:
    """Hash of the normalized source of ``function`` and the same-module helpers and constants it uses."""
    digest = hashlib.sha256()
    home = getattr(function, "__module__", "")
    seen: set[int] = set()
    pending: list[Callable[..., Any]] = [function]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        source, tree = _parsed(current)  # read and parsed once per function
        names = sorted({node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}) if tree else []
        digest.update((source if tree is None else ast.unparse(_strip(tree))).encode())
        namespace = getattr(current, "__globals__", {})
        for name in names:
            value = namespace.get(name)
            target = getattr(value, "function", value)  # a FeatureView wraps its function
            if isinstance(target, types.FunctionType) and _is_repo_function(target, home) and target is not current:
                pending.append(target)
            elif isinstance(value, _CONSTANT_TYPES) or (
                isinstance(value, (tuple, frozenset)) and all(isinstance(v, _CONSTANT_TYPES) for v in value)
            ):
                digest.update(f"\0{name}={value!r}".encode())
    return digest.hexdigest()[:16]


def snapshot(view: Any) -> None:
    """Record a view's code hash and source text now, while the file matches the imported code.

    Hashing later would re-read the file from disk, which may have been edited since the import:
    a running server would then vouch for code it is not running.
    """
    view.code_hash = code_hash(view.function)
    view.source_text = function_source(view.function)


def view_code_hash(view: Any) -> str:
    """The code hash recorded at load (or computed now for a view built outside a repo load)."""
    recorded: str | None = getattr(view, "code_hash", None)
    return recorded if recorded is not None else code_hash(view.function)


def view_source(view: Any) -> str:
    """The source text recorded at load (or read now)."""
    recorded: str | None = getattr(view, "source_text", None)
    return recorded if recorded is not None else function_source(view.function)


def fingerprint(code: str, definition: dict[str, Any], dependencies: list[str]) -> str:
    """The data version identity of a view: code hash + data-relevant definition + dependencies."""
    payload = json.dumps({"code": code, "definition": definition, "deps": sorted(dependencies)}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]
