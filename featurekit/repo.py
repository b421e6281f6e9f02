"""Load a feature repo: import its modules and collect definitions explicitly.

Nothing registers itself at import time. The loader imports each module of the repo (by default
the ``*.py`` files at its root, see ``include`` in ``featurekit.yaml``), collects the
:class:`~featurekit.definitions.FeatureView` and :class:`~featurekit.definitions.Entity` objects
found at module level, and validates all of them, reporting every problem at once with its file
and line (including a view that a later ``def`` of the same name would replace).

Each load imports the files as they are on disk: the repo's modules, helper modules included, are
dropped from ``sys.modules`` first and compiled from source, so a notebook that edits a helper and
opens a new store runs the edited code, which is also the code the version hash was taken of.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import linecache
import os
import sys
import traceback
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from types import CodeType, ModuleType

from featurekit.check import static_problems as check_problems
from featurekit.definitions import (
    Entity,
    FeatureRef,
    FeatureSet,
    FeatureView,
    FileSource,
    OnDemandView,
    SqlSource,
    WindowView,
)
from featurekit.errors import DefinitionError, InvalidNameError, SchemaError
from featurekit.names import case_clashes, name_problem, view_name_problem
from featurekit.versioning import in_repo, is_installed, snapshot


@dataclass
class RepoDefinitions:
    """What a repo defines, by name."""

    root: Path
    views: dict[str, FeatureView] = field(default_factory=dict)
    on_demand: dict[str, OnDemandView] = field(default_factory=dict)
    entities: dict[str, Entity] = field(default_factory=dict)
    feature_sets: dict[str, FeatureSet] = field(default_factory=dict)

    def any_view(self, name: str) -> FeatureView | OnDemandView | None:
        """The batch or on-demand view of that name (case-insensitive), if the repo defines it."""
        lowered = name.lower()
        for pool in (self.views, self.on_demand):
            for key, value in pool.items():
                if key.lower() == lowered:
                    return value
        return None


class _SourceLoader(importlib.machinery.SourceFileLoader):
    """Compiles a repo file from its source every time, never from ``__pycache__``.

    A ``.pyc`` records its source's mtime in whole seconds and its size: an edit of the same size
    within the same second would run the old bytecode while the code hash (taken from the source)
    vouches for the new code.
    """

    def get_code(self, fullname: str) -> CodeType:
        path = self.get_filename(fullname)
        return compile(self.get_data(path), path, "exec", dont_inherit=True)


class _RepoFinder(importlib.abc.MetaPathFinder):
    """Finds the repo's own modules (``import helpers``) and loads them with :class:`_SourceLoader`."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        spec = importlib.machinery.PathFinder.find_spec(fullname, list(path) if path is not None else [str(self.root)])
        if spec is None or not isinstance(spec.loader, importlib.machinery.SourceFileLoader):
            return None
        if not in_repo(spec.origin, self.root):
            return None
        spec.loader = _SourceLoader(fullname, str(spec.origin))
        return spec


@contextmanager
def _importable(root: Path) -> Iterator[None]:
    """The repo's folder on ``sys.path`` and its modules loaded from source, for the duration of a load."""
    finder = _RepoFinder(root)
    sys.path.insert(0, str(root))
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)
        sys.path.remove(str(root))


def _import(path: Path, root: Path, kind: str = "repo") -> ModuleType:
    tag = hashlib.sha256(str(path.resolve().parent).encode()).hexdigest()[:10]
    name = f"_featurekit_{kind}_{tag}_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path, loader=_SourceLoader(name, str(path)))
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # inspect and pickle-free tooling resolve functions through it
    spec.loader.exec_module(module)
    return module


def forget_repo_modules(root: Path) -> None:
    """Drop the repo's modules from ``sys.modules`` so that the next import reads the files as they are now.

    That includes helper modules that define no views (``import helpers``), and modules of the same
    name imported from another folder (another repo loaded in this process), which the repo's own
    would otherwise be shadowed by. Installed packages are never dropped.
    """
    resolved = root.resolve()
    tag = hashlib.sha256(str(resolved).encode()).hexdigest()[:10]
    packages = {p.name for p in root.iterdir() if (p / "__init__.py").is_file()} if root.is_dir() else set()
    own = {p.stem for p in root.glob("*.py")} | packages
    for name, module in list(sys.modules.items()):
        # From the module's namespace, not getattr: a missing attribute would run the module's
        # own __getattr__ (lazy loaders import or build things there), which made this loop, over
        # about a thousand modules, a sizeable part of a process's first training set.
        namespace = getattr(module, "__dict__", None) or {}
        file = namespace.get("__file__")
        paths = [str(p) for p in namespace.get("__path__", None) or []]
        ours = any(in_repo(f, resolved) for f in [file, *(os.path.join(p, "__init__.py") for p in paths)] if f)
        shadowing = name.split(".", 1)[0] in own and not is_installed(file)
        if name.startswith(f"_featurekit_repo_{tag}_") or ours or shadowing:
            del sys.modules[name]
    for file in list(linecache.cache):  # checkcache trusts size and mtime, as a .pyc does
        if in_repo(file, resolved):
            linecache.cache.pop(file, None)


def load_repo(root: Path, include: list[str]) -> RepoDefinitions:
    """Import the repo's modules (afresh: see :func:`forget_repo_modules`) and return its validated definitions."""
    problems: list[str] = []
    files = sorted({p for pattern in include for p in root.glob(pattern) if p.is_file() and p.suffix == ".py"})
    linecache.checkcache()  # edited files must be re-read by inspect.getsource
    importlib.invalidate_caches()  # a helper module created since the last load must be found
    forget_repo_modules(root)
    views: list[FeatureView] = []
    on_demand: list[OnDemandView] = []
    entities: list[Entity] = []
    sets: list[FeatureSet] = []
    with _importable(root):
        for path in files:
            try:
                module = _import(path, root)
            except Exception as exc:  # noqa: BLE001 -- user code: report its file and line, keep loading
                frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == str(path)]
                line = frames[-1].lineno if frames else getattr(exc, "lineno", 0) or 0
                problems.append(f"{path}:{line}: importing the module raised {type(exc).__name__}: {exc}")
                continue
            problems += _redefined_views(path)
            for value in vars(module).values():
                if isinstance(value, FeatureView) and not any(value is v for v in views):
                    views.append(value)
                elif isinstance(value, OnDemandView) and not any(value is v for v in on_demand):
                    on_demand.append(value)
                elif isinstance(value, Entity) and not any(value is e for e in entities):
                    entities.append(value)
                elif isinstance(value, FeatureSet) and not any(value is f for f in sets):
                    sets.append(value)
        for defined in [*views, *on_demand]:
            try:  # while the root is importable: a function may import a helper module in its body
                snapshot(defined, root)
            except DefinitionError as exc:
                problems += exc.problems
    for view in views:
        for entity in view.entities:
            if not any(entity is e for e in entities):
                entities.append(entity)
    problems += _entity_problems(entities)
    problems += _view_problems(views)
    problems += _on_demand_problems(on_demand, views)
    problems += _feature_set_problems(sets, [*views, *on_demand])
    if problems:
        only_names = all(isinstance(p, NameProblem) for p in problems)
        raise (InvalidNameError if only_names else DefinitionError)(problems)
    return RepoDefinitions(
        root=root,
        views={v.name: v for v in views},
        on_demand={v.name: v for v in on_demand},
        entities={e.name: e for e in entities},
        feature_sets={f.name: f for f in sets},
    )


def load_archive(root: Path, patterns: list[str]) -> list[FeatureView | OnDemandView]:
    """Import the archived modules (old versions' code), each on its own: versions may share names.

    Archived definitions are never applied; they are only run to rebuild the registered version
    whose code hash and definition they match exactly.
    """
    files = sorted({p for pattern in patterns for p in root.glob(pattern) if p.is_file() and p.suffix == ".py"})
    found: list[FeatureView | OnDemandView] = []
    problems: list[str] = []
    with _importable(root):
        for path in files:
            try:
                module = _import(path, root, "archive")
            except Exception as exc:  # noqa: BLE001 -- user code: report its file and line
                frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == str(path)]
                line = frames[-1].lineno if frames else getattr(exc, "lineno", 0) or 0
                problems.append(f"{path}:{line}: importing the archived module raised {type(exc).__name__}: {exc}")
                continue
            for value in vars(module).values():
                if isinstance(value, (FeatureView, OnDemandView)) and not any(value is v for v in found):
                    try:
                        snapshot(value, root)
                    except DefinitionError as exc:
                        problems += exc.problems
                        continue
                    found.append(value)
    if problems:
        raise DefinitionError(problems)
    return found


_DECORATORS = {"feature_view", "on_demand", "window_view"}


def _is_view_definition(node: ast.stmt) -> bool:
    """Whether a module-level ``def`` is decorated with ``@fk.feature_view(...)`` or ``@fk.on_demand(...)``."""
    if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        return False
    for decorator in node.decorator_list:
        target = decorator.func if isinstance(decorator, ast.Call) else decorator
        name = target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", None)
        if name in _DECORATORS:
            return True
    return False


def _redefined_views(path: Path) -> list[str]:
    """A view whose name a later ``def`` of the same module reuses would silently disappear: say so."""
    try:
        tree = ast.parse(path.read_text(), str(path))
    except (OSError, SyntaxError, ValueError):
        return []  # the import itself reported it
    definitions: dict[str, list[ast.FunctionDef | ast.AsyncFunctionDef]] = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            definitions.setdefault(node.name, []).append(node)
    problems = []
    for name, nodes in definitions.items():
        if len(nodes) > 1 and any(_is_view_definition(n) for n in nodes):
            lines = " and ".join(f"{path}:{_first_line(n)}" for n in nodes)
            problems.append(
                f"{path}:{_first_line(nodes[0])}: {name!r} is defined {len(nodes)} times in one module ({lines}); "
                "each definition replaces the one before, so a feature view would silently disappear: "
                "give each view its own function name"
            )
    return problems


def _first_line(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    return min([node.lineno, *(d.lineno for d in node.decorator_list)])


class NameProblem(str):
    """A problem with a name (unsafe, reserved or clashing): alone they raise InvalidNameError."""

    __slots__ = ()


def _entity_problems(entities: list[Entity]) -> list[str]:
    problems: list[str] = []
    for entity in entities:
        where = str(entity.location)
        if (p := name_problem(entity.name, "entity")) is not None:
            problems.append(NameProblem(f"{where}: {p}"))
        if not entity.join_keys:
            problems.append(f"{where}: entity {entity.name!r} has no join keys; pass join_keys=['..._id']")
        for key in entity.join_keys:
            if (p := name_problem(key, f"join key of entity {entity.name!r}")) is not None:
                problems.append(NameProblem(f"{where}: {p}"))
        for group in case_clashes(list(entity.join_keys)):
            problems.append(f"{where}: entity {entity.name!r} repeats join key {group}")
    return problems + _shared_names(entities, "entities")


def _view_problems(views: list[FeatureView]) -> list[str]:
    problems: list[str] = []
    for view in views:
        where = f"{view.location}: feature view {view.name!r}"
        if (p := view_name_problem(view.name, "feature view")) is not None:
            problems.append(NameProblem(f"{view.location}: {p}"))
        if not view.entities or not all(isinstance(e, Entity) for e in view.entities):
            problems.append(f"{where}: entity= must be an fk.Entity or a list of them")
            continue
        source = view.source
        if not isinstance(source, (FileSource, SqlSource)):
            problems.append(f"{where}: source= must be fk.FileSource or fk.SqlSource, got {type(source).__name__}")
            continue
        for column in source.timestamp_columns:
            if (p := name_problem(column, "timestamp field")) is not None:
                problems.append(NameProblem(f"{where}: {p}"))
        if source.created_timestamp_field == source.timestamp_field:
            problems.append(f"{where}: created_timestamp_field must differ from timestamp_field")
        clash = {k.lower() for k in view.join_keys} & {c.lower() for c in source.timestamp_columns}
        if clash:
            problems.append(f"{where}: join keys and timestamp fields share names {sorted(clash)}")
        if source.on_null not in ("error", "drop"):
            problems.append(f"{where}: on_null must be 'error' or 'drop', got {source.on_null!r}")
        if view.ttl is not None and (not isinstance(view.ttl, timedelta) or view.ttl <= timedelta(0)):
            problems.append(f"{where}: ttl must be a positive timedelta or None, got {view.ttl!r}")
        problems += _schema_problems(view, where)
        problems += check_problems(view)
        if isinstance(view, WindowView):
            from featurekit.windows import static_problems

            problems += static_problems(view)
        if isinstance(source, FileSource) and not source.path:
            problems.append(f"{where}: FileSource needs a path")
        if isinstance(source, SqlSource) and not source.query.strip():
            problems.append(f"{where}: SqlSource needs a query")
    return problems


def _schema_problems(view: FeatureView, where: str) -> list[str]:
    from featurekit.transform import declared_types

    if not isinstance(view.schema, dict) or not all(isinstance(n, str) for n in view.schema):
        return [f"{where}: schema= must map output column names to dtypes, e.g. {{'n': pl.Int64}}"]
    problems = []
    try:
        declared_types(view)
    except SchemaError as exc:
        problems.append(f"{where}: {exc}")
    timestamps = [c for c in view.schema if c in view.source.timestamp_columns]
    if timestamps:
        problems.append(f"{where}: schema= declares timestamp columns {timestamps}; they are always UTC instants")
    return problems


def _on_demand_problems(on_demand: list[OnDemandView], views: list[FeatureView]) -> list[str]:
    import polars as pl

    from featurekit.references import parse_ref

    problems: list[str] = []
    for view in on_demand:
        where = f"{view.location}: on-demand view {view.name!r}"
        if (p := view_name_problem(view.name, "on-demand view")) is not None:
            problems.append(NameProblem(f"{view.location}: {p}"))
        if not view.inputs and not view.request:
            problems.append(f"{where}: declare inputs=['view:feature', ...] and/or request={{'name': pl.Float64}}")
        for item in view.inputs:
            try:
                ref = parse_ref(item) if isinstance(item, (str, FeatureRef)) else None
            except Exception as exc:  # noqa: BLE001 -- reported with the definition's location
                problems.append(f"{where}: input {item!r}: {exc}")
                continue
            if ref is None or ref.feature is None:
                problems.append(f"{where}: input {item!r} must name one feature as 'view:feature'")
        for name, dtype in view.request.items():
            if (p := name_problem(name, "request input")) is not None:
                problems.append(NameProblem(f"{where}: {p}"))
            is_dtype = isinstance(dtype, pl.DataType) or (isinstance(dtype, type) and issubclass(dtype, pl.DataType))
            if not is_dtype:
                problems.append(
                    f"{where}: request input {name!r} needs a polars dtype (e.g. pl.Float64), got {dtype!r}"
                )
    return problems + _shared_names([*views, *on_demand], "views")


def _feature_set_problems(sets: list[FeatureSet], views: list[FeatureView | OnDemandView]) -> list[str]:
    """Feature sets: safe names, a non-empty list of feature requests, one namespace with the views."""
    from featurekit.references import parse_ref

    problems: list[str] = []
    set_names = {f.name.lower() for f in sets if isinstance(f.name, str)}
    view_names = {v.name.lower(): v for v in views}
    for feature_set in sets:
        where = f"{feature_set.location}: feature set {feature_set.name!r}"
        if not isinstance(feature_set.name, str):
            problems.append(f"{feature_set.location}: a feature set needs a string name, got {feature_set.name!r}")
            continue
        if (p := view_name_problem(feature_set.name, "feature set")) is not None:
            problems.append(NameProblem(f"{feature_set.location}: {p}"))
            continue
        clash = view_names.get(feature_set.name.lower())
        if clash is not None:
            problems.append(
                NameProblem(f"{where} has the name of the view defined at {clash.location}; rename one of them")
            )
        if not feature_set.features:
            problems.append(f"{where} lists no features; pass features=['view:feature', ...]")
        for item in feature_set.features:
            try:
                ref = parse_ref(item)
            except Exception as exc:  # noqa: BLE001 -- reported with the definition's location
                problems.append(f"{where}: feature {item!r}: {exc}")
                continue
            if ref.view.lower() in set_names:
                problems.append(f"{where} lists the feature set {ref.view!r}; list its features instead")
    return problems + _shared_names(sets, "feature sets")


def _shared_names(items: Sequence[Entity | FeatureView | OnDemandView | FeatureSet], what: str) -> list[str]:
    """One problem per group of definitions whose names are equal ignoring case."""
    by_name: dict[str, list[Entity | FeatureView | OnDemandView | FeatureSet]] = {}
    for item in items:
        by_name.setdefault(str(item.name).lower(), []).append(item)
    return [
        NameProblem(
            f"{what} share a name (case-insensitively): "
            + ", ".join(f"{i.name!r} at {i.location}" for i in same)
            + "; rename all but one"
        )
        for same in by_name.values()
        if len(same) > 1
    ]
