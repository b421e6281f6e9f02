"""Versions from code: a view's version changes exactly when what it computes may change.

The *code hash* covers the function's normalized source (the AST with docstrings, comments,
decorators and formatting stripped) plus, transitively, everything of the repo it reaches: the
functions and classes it calls (in any module of the repo, named directly, imported with
``from helpers import f`` or reached as ``helpers.f``), the repo modules it uses as a whole, and
the module-level values it reads (numbers, strings, lists, dicts, sets, dataclasses, enums, polars
expressions...). Third-party and standard-library code is identified by its qualified name only.
A value with no stable representation cannot be versioned and is a :class:`DefinitionError`
naming the view, the name and where it is read.

The *fingerprint* adds the decorator arguments that change data (entity keys, TTL, source
definition, declared schema) and the fingerprints of what the view depends on. Metadata
(description, tags, owner) is left out, so editing it does not create a new data version.
"""

from __future__ import annotations

import ast
import builtins
import dataclasses
import datetime as dt
import decimal
import enum
import fractions
import functools
import hashlib
import importlib
import importlib.util
import inspect
import json
import logging
import os
import pathlib
import re
import symtable
import sys
import sysconfig
import textwrap
import types
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from featurekit.errors import DefinitionError

_PLAIN = (type(None), bool, int, float, complex, str, bytes)
_BY_REPR = (
    dt.datetime,
    dt.date,
    dt.time,
    dt.timedelta,
    dt.tzinfo,
    decimal.Decimal,
    fractions.Fraction,
    uuid.UUID,
    pathlib.PurePath,
    range,
    slice,
)
_INSTALLED_PARTS = {"site-packages", "dist-packages"}
_FEATUREKIT_DIR = Path(__file__).resolve().parent


def function_source(function: Callable[..., Any]) -> str:
    """The function's source text as written (for display and diffs)."""
    try:
        return textwrap.dedent(inspect.getsource(function))
    except (OSError, TypeError):
        return f"# source of {getattr(function, '__qualname__', function)!r} is not available\n"


def is_installed(file: str | None) -> bool:
    """Whether ``file`` belongs to the standard library or an installed package (never versioned)."""
    if not file:
        return True
    return _installed_folder(os.path.dirname(file))


@functools.lru_cache(maxsize=4096)
def _installed_folder(folder: str) -> bool:
    # Cached per folder: a repo load checks every imported module (over a thousand, in a few
    # hundred folders), and resolving each path cost 0.1 s of every first training set. Resolved
    # first, by name even under site-packages: a package linked there from the repo
    # (``flit install --symlink``) is the repo's code, and versioned.
    path = Path(_real_folder(folder))
    if _INSTALLED_PARTS & set(path.parts) or path.is_relative_to(_FEATUREKIT_DIR):
        return True
    return any(path.is_relative_to(p) for p in _stdlib())


@functools.lru_cache(maxsize=4096)
def _real_folder(folder: str) -> str:
    return os.path.realpath(folder)


@functools.cache
def _stdlib() -> tuple[Path, ...]:
    return tuple({Path(sysconfig.get_paths()[k]).resolve() for k in ("stdlib", "platstdlib")})


def in_repo(file: str | None, root: Path) -> bool:
    """Whether ``file`` is part of the repo at ``root`` (resolved; not in a hidden folder such as a
    virtualenv, nor in ``__pycache__``).

    On strings, with each folder resolved once per process: a repo load asks this of every
    imported module, and building paths for each was most of the load's time.
    """
    if not file or is_installed(file):
        return False
    folder, base = _real_folder(os.path.dirname(file)), str(root)
    if folder == base:
        return True
    prefix = base if base.endswith(os.sep) else base + os.sep
    if not folder.startswith(prefix):
        return False
    return not any(part.startswith(".") or part == "__pycache__" for part in folder[len(prefix) :].split(os.sep))


def _strip(tree: ast.AST, decorators: bool) -> ast.AST:
    """Drop docstrings (and, for the view itself, its decorators: their arguments are the definition)."""
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
    if decorators and isinstance(tree, ast.Module):
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                node.decorator_list = []
    return tree


def _global_names(table: symtable.SymbolTable, top: bool = True) -> set[str]:
    """Names a piece of code looks up outside itself (globals and builtins), in every nested scope."""
    names = {s.get_name() for s in table.get_symbols() if s.is_global() or (top and s.is_referenced())}
    for child in table.get_children():
        names |= _global_names(child, top=False)
    return names


@dataclasses.dataclass
class _Item:
    """A piece of repo code whose normalized source goes into the hash."""

    kind: str  # "function", "class" or "module"
    obj: Any
    index: int


class _Hasher:
    """Walks from a view's function through everything of the repo it reaches, hashing as it goes."""

    def __init__(self, root: Path, what: str) -> None:
        self.root = root.resolve()
        self.what = what
        self.digest = hashlib.sha256()
        self.items: dict[int, _Item] = {}
        self.queue: list[_Item] = []
        self.problems: list[str] = []
        self.view_functions: set[int] = set()  # their decorators are the view's definition, not code

    def run(self, function: Callable[..., Any]) -> str:
        self.view_functions.add(id(function))
        self._enqueue("function", function)
        position = 0
        while position < len(self.queue):
            item = self.queue[position]
            position += 1
            self._hash_item(item, view_function=id(item.obj) in self.view_functions)
        if self.problems:
            raise DefinitionError(self.problems)
        return self.digest.hexdigest()[:16]

    def _enqueue(self, kind: str, obj: Any) -> str:
        found = self.items.get(id(obj))
        if found is None:
            found = _Item(kind, obj, len(self.items))
            self.items[id(obj)] = found
            self.queue.append(found)
        return f"{kind}#{found.index}"

    # -- one piece of code ------------------------------------------------------------------------

    def _hash_item(self, item: _Item, view_function: bool) -> None:
        obj = item.obj
        namespace: dict[str, Any]
        if item.kind == "module":
            file = str(getattr(obj, "__file__", ""))
            source, first_line, namespace = Path(file).read_text(), 1, vars(obj)
        else:
            file = inspect.getsourcefile(obj) or "<unknown>"
            try:
                lines, first_line = inspect.getsourcelines(obj)
            except (OSError, TypeError):
                self.digest.update(f"{item.kind}\n{function_source(obj)}".encode())
                return
            source = textwrap.dedent("".join(lines))
            if item.kind == "function":
                namespace = dict(obj.__globals__)
                for name, cell in zip(obj.__code__.co_freevars, obj.__closure__ or (), strict=True):
                    try:
                        namespace[name] = cell.cell_contents
                    except ValueError:  # a cell not filled yet: nothing to read
                        continue
            else:
                namespace = dict(vars(sys.modules[obj.__module__]))
        try:
            tree = _strip(ast.parse(source), decorators=view_function)
        except SyntaxError:  # e.g. a lambda in the middle of an expression: hash its text as written
            self.digest.update(f"{item.kind}\n{source}".encode())
            return
        normalized = ast.unparse(tree)
        self.digest.update(f"{item.kind}\n{normalized}\n".encode())
        table = symtable.symtable(normalized, file, "exec")
        if item.kind == "module":
            names = {s.get_name() for s in table.get_symbols() if s.is_imported()}
        else:
            names = _global_names(table) - {s.get_name() for s in table.get_symbols() if s.is_assigned()}
        where = _Where(file, first_line, tree)
        references = self._attribute_references(tree, names, namespace, where)
        for name in sorted(names - {n.split(".")[0] for n in references if "." in n}):
            if name in namespace:
                references[name] = self._describe(namespace[name], name, where)
            elif name in vars(builtins):
                references[name] = f"builtin:{name}"
            else:
                references[name] = "undefined"
        references.update(self._local_imports(tree, namespace, where))
        for name in sorted(references):
            self.digest.update(f"\0{name}={references[name]}".encode())
        self.digest.update(b"\n")

    def _attribute_references(
        self, tree: ast.AST, names: set[str], namespace: dict[str, Any], where: _Where
    ) -> dict[str, str]:
        """``helpers.f`` and ``pkg.sub.X`` where ``helpers``/``pkg`` are repo modules: hash what is reached.

        A repo module used other than as the base of such an attribute is hashed whole.
        """
        modules = {n for n in names if self._is_repo_module(namespace.get(n))}
        if not modules:
            return {}
        inner = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
        bare: set[str] = set()
        references: dict[str, str] = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and node.id in modules and id(node) not in inner:
                bare.add(node.id)
            if not isinstance(node, ast.Attribute) or id(node) in inner:
                continue
            parts: list[str] = []
            current: ast.expr = node
            while isinstance(current, ast.Attribute):
                parts.append(current.attr)
                current = current.value
            if not isinstance(current, ast.Name) or current.id not in modules:
                continue
            parts.append(current.id)
            parts.reverse()
            value, depth = namespace[parts[0]], 1
            while depth < len(parts) and self._is_repo_module(value) and hasattr(value, parts[depth]):
                value, depth = getattr(value, parts[depth]), depth + 1
            dotted = ".".join(parts[:depth])
            if depth == 1:  # an attribute the module does not have: hash the module whole
                bare.add(parts[0])
            elif self._is_repo_module(value):
                references[dotted] = self._enqueue("module", value)
            else:
                references[dotted] = self._describe(value, dotted, where)
        for name in bare:
            references[name] = self._enqueue("module", namespace[name])
        return references

    def _local_imports(self, tree: ast.AST, namespace: dict[str, Any], where: _Where) -> dict[str, str]:
        """Imports inside functions (``import helpers`` in the body) reach repo modules too."""
        references: dict[str, str] = {}
        package = namespace.get("__package__") or None
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Import, ast.ImportFrom)) or node in getattr(tree, "body", []):
                continue
            targets: list[tuple[str, str | None]]
            if isinstance(node, ast.Import):
                targets = [(alias.name, None) for alias in node.names]
            else:
                base = "." * node.level + (node.module or "")
                targets = [(base, alias.name) for alias in node.names]
            for module_name, attribute in targets:
                label = f"import {module_name}" + (f".{attribute}" if attribute else "")
                module = self._import_if_repo(module_name, package, label, where, node)
                if module is None:
                    references[label] = f"module:{module_name}"
                elif attribute is None:
                    references[label] = self._describe(module, label, where, node)
                else:
                    references[label] = self._describe(getattr(module, attribute, None), label, where, node)
        return references

    def _import_if_repo(
        self, name: str, package: str | None, label: str, where: _Where, node: ast.AST
    ) -> types.ModuleType | None:
        """The repo module an import inside a function names (imported now), or None for any other module.

        Other modules are not imported here: an optional dependency may be missing on purpose.
        """
        try:
            resolved = importlib.util.resolve_name(name, package)
            module = sys.modules.get(resolved)
            if module is not None:
                return module if self._is_repo_module(module) else None
            spec = importlib.util.find_spec(resolved)
        except (ImportError, ValueError):
            return None
        if spec is None or not in_repo(spec.origin, self.root):
            return None
        try:
            return importlib.import_module(resolved)
        except Exception as exc:  # noqa: BLE001 -- user code: report where it is imported
            self.problems.append(
                f"{where.at(node)}: {self.what} imports {name!r} ({label}), which raised {type(exc).__name__}: {exc}"
            )
            return None

    # -- one value --------------------------------------------------------------------------------

    def _is_repo_module(self, value: Any) -> bool:
        return isinstance(value, types.ModuleType) and in_repo(getattr(value, "__file__", None), self.root)

    def _in_repo(self, value: Any) -> bool:
        if isinstance(value, types.ModuleType):
            return self._is_repo_module(value)
        if isinstance(value, type):
            module = sys.modules.get(value.__module__)
            return in_repo(getattr(module, "__file__", None), self.root)
        code = getattr(value, "__code__", None)
        return isinstance(code, types.CodeType) and in_repo(code.co_filename, self.root)

    def _describe(self, value: Any, name: str, where: _Where, node: ast.AST | None = None) -> str:
        """A stable text for ``value``, queueing the repo code it is made of; a problem if it has none."""
        try:
            return self._stable(value, depth=0)
        except _Unstable as exc:
            self.problems.append(
                f"{where.at(node or where.first_use(name))}: {self.what} reads {name!r}, {exc.reason}; featurekit "
                "cannot tell when it changes, so it cannot version the view. Make it a constant of plain values "
                "(numbers, strings, lists, dicts, dataclasses), or build it inside a function of the repo"
            )
            return "unversionable"

    def _stable(self, value: Any, depth: int) -> str:
        from featurekit.definitions import Entity, FileSource, SqlSource, _ViewBase

        if depth > 50:
            raise _Unstable("a value nested too deeply (or containing itself)")
        nested = functools.partial(self._stable, depth=depth + 1)
        if isinstance(value, _ViewBase):
            self.view_functions.add(id(value.function))
            return "view:" + self._enqueue("function", value.function)
        if isinstance(value, Entity):
            return f"entity:{value.name}:{list(value.join_keys)}"
        if isinstance(value, (FileSource, SqlSource)):
            return "source:" + json.dumps(value.describe(), sort_keys=True)
        if isinstance(value, _PLAIN):
            return f"{type(value).__name__}:{value!r}"
        if isinstance(value, enum.Enum):
            return f"enum:{nested(type(value))}.{value.name}={nested(value.value)}"
        if isinstance(value, _BY_REPR):
            return f"{type(value).__qualname__}:{value!r}"
        if isinstance(value, logging.Logger):  # logs, never data
            return f"logger:{value.name}"
        if isinstance(value, re.Pattern):
            return f"re:{value.pattern!r}:{value.flags}"
        if isinstance(value, (list, tuple)):
            kind = type(value).__qualname__ if type(value) in (list, tuple) else nested(type(value))
            return f"{kind}[" + ",".join(nested(v) for v in value) + "]"
        if isinstance(value, (set, frozenset)):
            return f"{type(value).__qualname__}{{" + ",".join(sorted(nested(v) for v in value)) + "}"
        if isinstance(value, dict):
            kind = "dict" if type(value) is dict else nested(type(value))
            return f"{kind}{{" + ",".join(f"{nested(k)}:{nested(v)}" for k, v in value.items()) + "}"
        if isinstance(value, functools.partial):
            return f"partial({nested(value.func)},{nested(value.args)},{nested(value.keywords)})"
        if isinstance(value, types.ModuleType):
            if self._is_repo_module(value):
                return self._enqueue("module", value)
            return f"module:{value.__name__}"
        if isinstance(value, type):
            if self._in_repo(value):
                return self._enqueue("class", value)
            return f"class:{value.__module__}.{value.__qualname__}"
        if isinstance(value, (types.FunctionType, types.BuiltinFunctionType, types.MethodType)) or callable(value):
            unwrapped = inspect.unwrap(value) if hasattr(value, "__wrapped__") else value
            if isinstance(unwrapped, types.FunctionType) and self._in_repo(unwrapped):
                return self._enqueue("function", value if unwrapped is value else unwrapped)
            if isinstance(value, types.MethodType):
                return f"method:{nested(value.__self__)}.{value.__func__.__name__}"
            qualname = getattr(value, "__qualname__", None) or getattr(value, "__name__", None)
            if isinstance(qualname, str) and "<" not in qualname and not self._in_repo(type(value)):
                return f"callable:{getattr(value, '__module__', None) or type(value).__module__}.{qualname}"
        known = self._third_party(value)
        if known is not None:
            return known
        if dataclasses.is_dataclass(value):
            fields = ",".join(f"{f.name}={nested(getattr(value, f.name))}" for f in dataclasses.fields(value))
            return f"{nested(type(value))}({fields})"
        if self._in_repo(type(value)) and hasattr(value, "__dict__"):
            return f"{nested(type(value))}({nested(vars(value))})"
        raise _Unstable(f"a {type(value).__module__}.{type(value).__qualname__} with no stable representation")

    def _third_party(self, value: Any) -> str | None:
        """Values of the data libraries featurekit knows that do have a stable representation."""
        module = type(value).__module__.split(".")[0]
        if module == "polars":
            import polars as pl

            if isinstance(value, pl.Expr):
                return "expr:" + value.meta.serialize(format="json")
            if isinstance(value, pl.DataType):
                return f"dtype:{value!r}"
        if module == "pyarrow":
            import pyarrow as pa

            if isinstance(value, (pa.DataType, pa.Field, pa.Schema)):
                return f"arrow:{value}"
        if module == "numpy" and hasattr(value, "tobytes") and hasattr(value, "dtype"):
            data = hashlib.sha256(value.tobytes()).hexdigest()
            return f"numpy:{value.dtype}:{getattr(value, 'shape', ())}:{data}"
        if module == "pandas" and type(value).__name__ in ("Timestamp", "Timedelta"):
            return f"pandas:{value!r}"
        table = _as_arrow_table(value, module)
        if table is not None:  # a lookup table: its content
            import pyarrow as pa

            sink = pa.BufferOutputStream()
            with pa.ipc.new_stream(sink, table.schema) as writer:
                writer.write_table(table)
            return f"table:{type(value).__qualname__}:{hashlib.sha256(sink.getvalue().to_pybytes()).hexdigest()}"
        return None


def _as_arrow_table(value: Any, module: str) -> Any:
    """A polars, pandas or Arrow frame, series or array as an Arrow table (None for anything else)."""
    if module not in ("polars", "pandas", "pyarrow"):
        return None
    import pandas as pd
    import polars as pl
    import pyarrow as pa

    if isinstance(value, pl.Series):
        value = value.to_frame()
    if isinstance(value, pl.DataFrame):
        return value.to_arrow()
    if isinstance(value, pd.Series):
        value = value.to_frame()
    if isinstance(value, pd.DataFrame):
        return pa.Table.from_pandas(value)
    if isinstance(value, (pa.Array, pa.ChunkedArray)):
        return pa.table({"values": value})
    if isinstance(value, pa.RecordBatch):
        return pa.Table.from_batches([value])
    if isinstance(value, pa.Table):
        return value
    return None


class _Unstable(Exception):  # noqa: N818 -- internal signal, never leaves this module
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclasses.dataclass
class _Where:
    """Turns a node of an item's source into ``file:line``."""

    file: str
    first_line: int
    tree: ast.AST

    def at(self, node: ast.AST | None) -> str:
        line = getattr(node, "lineno", 1)
        return f"{self.file}:{self.first_line + line - 1}"

    def first_use(self, name: str) -> ast.AST | None:
        head = name.split(".", maxsplit=1)[0]
        uses = [n for n in ast.walk(self.tree) if isinstance(n, ast.Name) and n.id == head]
        return min(uses, key=lambda n: (n.lineno, n.col_offset), default=None)


def code_hash(function: Callable[..., Any], root: Path | None = None, what: str | None = None) -> str:
    """Hash of the normalized source of ``function`` and of everything of the repo at ``root`` it reaches.

    ``root`` defaults to the folder of the function's file. Raises :class:`DefinitionError`, naming
    ``what`` (e.g. ``feature view 'x'``), for each value reached that has no stable representation.
    """
    if root is None:
        code = getattr(function, "__code__", None)
        root = Path(code.co_filename).parent if code is not None else Path.cwd()
    label = what or f"function {getattr(function, '__qualname__', function)!r}"
    return _Hasher(root, label).run(function)


def _label(view: Any) -> str:
    kind = "on-demand view" if type(view).__name__ == "OnDemandView" else "feature view"
    return f"{kind} {view.name!r}"


def snapshot(view: Any, root: Path | None = None) -> None:
    """Record a view's code hash and source text now, while the files match the imported code.

    Hashing later would re-read the files from disk, which may have been edited since the import:
    a running server would then vouch for code it is not running.
    """
    view.code_hash = code_hash(view.function, root, _label(view))
    view.source_text = function_source(view.function)


def view_code_hash(view: Any) -> str:
    """The code hash recorded at load (or computed now for a view built outside a repo load)."""
    recorded: str | None = getattr(view, "code_hash", None)
    return recorded if recorded is not None else code_hash(view.function, None, _label(view))


def view_source(view: Any) -> str:
    """The source text recorded at load (or read now)."""
    recorded: str | None = getattr(view, "source_text", None)
    return recorded if recorded is not None else function_source(view.function)


def fingerprint(code: str, definition: dict[str, Any], dependencies: list[str]) -> str:
    """The data version identity of a view: code hash + data-relevant definition + dependencies."""
    payload = json.dumps({"code": code, "definition": definition, "deps": sorted(dependencies)}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]
