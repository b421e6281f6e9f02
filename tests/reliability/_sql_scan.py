"""A static check that SQL text in featurekit is built only from quoted identifiers and fixed fragments.

It finds every call of ``.execute``, ``.executemany``, ``.executescript``, ``.sql`` or ``.query``
whose first argument is built right there (an f-string, ``%`` or ``.format`` formatting, a
concatenation) or is a local variable assigned such text in the same function, and checks each
value formatted into that text. A value is safe when it is:

* a constant;
* ``quote(...)`` (``featurekit.names.quote``: double quotes, embedded quotes doubled, NUL refused);
* ``int(...)``: renders digits (and a sign) only;
* a name bound, in the same function or at module level, only to safe text: constants, f-strings
  of safe values, concatenations, conditional expressions, ``sep.join(...)`` of safe elements
  (lists, tuples, comprehensions; a comprehension variable over a safe sequence is safe);
* listed in :data:`ALLOWED`, with the reason it cannot carry user text.

Anything else is reported with file, line and the offending expression.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

SQL_METHODS = frozenset({"execute", "executemany", "executescript", "sql", "query"})

# Values formatted into SQL that the scan cannot prove safe, trusted for the stated reason. Keyed by
# (module path relative to featurekit/, enclosing function, the value's source text).
ALLOWED: dict[tuple[str, str, str], str] = {
    # order_key() returns struct fields "name := f.<quote(column)>" built from quote()d columns and
    # the fixed alias it is given; newest_rows splices them into struct_pack(...).
    ("offline/duckdb_engine.py", "newest_rows", "order_key(view, 'f')"): "struct fields from quote()d columns",
    # DuckDBEngine._newest_select(con, view, inner, params) is private: newest_rows passes the
    # query it built from quote()d keys, order_key() fields, registered names and "?".
    ("offline/duckdb_engine.py", "_newest_select", "inner"): "newest_rows' query of quote()d columns and ?",
    # DuckDBJoin.sql is the query _build() assembled from quote()d identifiers, internal aliases
    # and "?" placeholders; COPY (...) TO ? wraps it without adding text of its own.
    ("offline/duckdb_join.py", "to_parquet", "self.sql"): "the training-set query built by DuckDBJoin._build",
    # DuckDBEngine._source_sql(select, where) is private: every caller passes text built by the
    # engine itself from quote()d columns, "?" placeholders and the integer bucket count. The
    # location of an "sql" scan is the query of the user's own SqlSource, which is code in the
    # feature repo by design, not request data; file paths are parameters.
    ("offline/duckdb_engine.py", "_source_sql", "select"): "built by the engine from quote()d columns",
    ("offline/duckdb_engine.py", "_source_sql", "where"): "built by the engine from quote()d columns and ?",
    ("offline/duckdb_engine.py", "_source_sql", "scan.location"): "the repo's own SqlSource query",
    # DuckDBJoin._source() and _spine_relation() return read_parquet(?) (or a registered name)
    # with "?" placeholders whose values they append to the params list they are given.
    ("offline/duckdb_join.py", "_coded_rows", "self._source(view, params)"): "read_parquet(?) and ? only",
    ("offline/duckdb_join.py", "_rows_at", "self._source(view, params)"): "read_parquet(?) and ? only",
    ("offline/duckdb_join.py", "_coded_rows", "self._spine_relation(params)"): "the spine scan with ? only",
    # _instant_rows(view, match, params) appends the rows of each matched instant to ``match``, SQL
    # built by _asof_sql or _join_view from quote()d identifiers, internal names and "?".
    ("offline/duckdb_join.py", "_instant_rows", "match"): "SQL of quote()d identifiers and ?",
    ("offline/duckdb_join.py", "_instant_rows", "order_key(view, 'f')"): "struct fields from quote()d columns",
    # _tie_winners reduces the tied rows of the asof_sorted plan by the same order_key() fields.
    ("offline/duckdb_join.py", "_tie_winners", "order_key(view, 'f')"): "struct fields from quote()d columns",
}


@dataclass(frozen=True)
class Finding:
    """A value formatted into SQL that is not provably safe."""

    path: str
    line: int
    function: str
    expression: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line} in {self.function}(): {self.expression}"


class _Function:
    """Assignments of one function (or a module body) by name, for resolving local variables."""

    def __init__(self, name: str, body: ast.AST, module: _Function | None) -> None:
        self.name = name
        self.module = module
        self.assigned: dict[str, list[ast.expr | None]] = {}
        for node in _walk_own(body):
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    self._bind(target, node.value)
            elif isinstance(node, ast.AnnAssign) and node.value is not None:
                self._bind(node.target, node.value)
            elif isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Name):
                self.assigned.setdefault(node.target.id, []).append(node.value)
            elif isinstance(node, (ast.For, ast.AsyncFor, ast.With, ast.AsyncWith, ast.NamedExpr)):
                targets = (
                    [node.target]
                    if isinstance(node, (ast.For, ast.AsyncFor, ast.NamedExpr))
                    else [i.optional_vars for i in node.items if i.optional_vars is not None]
                )
                for target in targets:
                    self._bind(target, None)  # bound to something the scan cannot see
        if isinstance(body, (ast.FunctionDef, ast.AsyncFunctionDef)):
            arguments = body.args
            for arg in [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs]:
                self.assigned.setdefault(arg.arg, []).append(None)

    def _bind(self, target: ast.expr, value: ast.expr | None) -> None:
        if isinstance(target, ast.Name):
            self.assigned.setdefault(target.id, []).append(value)
        elif isinstance(target, (ast.Tuple, ast.List)):
            values = value.elts if isinstance(value, (ast.Tuple, ast.List)) else None
            for index, element in enumerate(target.elts):
                inner = values[index] if values is not None and len(values) == len(target.elts) else None
                self._bind(element.value if isinstance(element, ast.Starred) else element, inner)

    def values(self, name: str) -> list[ast.expr | None] | None:
        """What ``name`` may hold here (``None`` entries: unknown), or ``None`` if it is not bound here."""
        if name in self.assigned:
            return self.assigned[name]
        if self.module is not None:
            return self.module.values(name)
        return None


def _walk_own(body: ast.AST) -> Iterator[ast.AST]:
    """Nodes of a function body, without descending into nested functions or classes."""
    stack = list(ast.iter_child_nodes(body))
    while stack:
        node = stack.pop()
        yield node
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            stack.extend(ast.iter_child_nodes(node))


class _Checker:
    def __init__(self, path: str, scope: _Function, allowed: dict[tuple[str, str, str], str]) -> None:
        self.path = path
        self.scope = scope
        self.allowed = allowed
        self.findings: list[Finding] = []
        self._resolving: set[str] = set()

    def report(self, node: ast.expr) -> None:
        if not self.allows(node):
            self.findings.append(Finding(self.path, node.lineno, self.scope.name, ast.unparse(node)))

    # -- text: what a SQL string is built from ----------------------------------------------------

    def text(self, node: ast.expr, safe_names: frozenset[str] = frozenset()) -> None:
        """Check text that becomes SQL: every non-constant part must be a safe value."""
        if isinstance(node, ast.Constant):
            return
        if isinstance(node, ast.JoinedStr):
            for part in node.values:
                if isinstance(part, ast.FormattedValue):
                    self.value(part.value, safe_names)
            return
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            self.text(node.left, safe_names)
            self.text(node.right, safe_names)
            return
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod) and _is_str(node.left):
            operands = node.right.elts if isinstance(node.right, ast.Tuple) else [node.right]
            for operand in operands:
                self.value(operand, safe_names)
            return
        if _is_method(node, "format") and isinstance(node, ast.Call):
            assert isinstance(node.func, ast.Attribute)
            self.text(node.func.value, safe_names)
            for argument in [*node.args, *(k.value for k in node.keywords)]:
                self.value(argument, safe_names)
            return
        self.value(node, safe_names)

    # -- values: what is formatted into SQL text --------------------------------------------------

    def value(self, node: ast.expr, safe_names: frozenset[str] = frozenset()) -> None:
        """Report every part of ``node`` that is not provably safe (the innermost culprit)."""
        if self.allows(node) or isinstance(node, ast.Constant):
            return
        if isinstance(node, ast.Call) and _called(node) in ("quote", "int"):
            return
        if isinstance(node, ast.JoinedStr):
            for part in node.values:
                if isinstance(part, ast.FormattedValue):
                    self.value(part.value, safe_names)
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            self.value(node.left, safe_names)
            self.value(node.right, safe_names)
        elif isinstance(node, ast.IfExp):
            self.value(node.body, safe_names)
            self.value(node.orelse, safe_names)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "join":
            if _is_str(node.func.value) and len(node.args) == 1 and not node.keywords:
                self.value(node.func.value, safe_names)
                self.sequence(node.args[0], safe_names)
            else:
                self.report(node)
        elif isinstance(node, ast.Name):
            if node.id not in safe_names:
                self.resolve(node, self.value)
        else:
            self.report(node)

    def sequence(self, node: ast.expr, safe_names: frozenset[str] = frozenset()) -> None:
        """Report unsafe elements of a list, tuple, set or comprehension of SQL text."""
        if self.allows(node):
            return
        if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
            for element in node.elts:
                if isinstance(element, ast.Starred):
                    self.sequence(element.value, safe_names)
                else:
                    self.value(element, safe_names)
        elif isinstance(node, (ast.ListComp, ast.GeneratorExp, ast.SetComp)):
            names = set(safe_names)
            for generator in node.generators:
                # A variable iterating over a sequence of safe text is safe text; over anything
                # else it is not, and only the element built from it decides.
                if isinstance(generator.target, ast.Name) and self.quietly(self.sequence, generator.iter, names):
                    names.add(generator.target.id)
            self.value(node.elt, frozenset(names))
        elif isinstance(node, ast.Name) and node.id not in safe_names:
            self.resolve(node, self.sequence)
        elif not isinstance(node, ast.Name):
            self.report(node)

    def resolve(self, node: ast.Name, check: Callable[[ast.expr], None]) -> None:
        """Check every value a local or module-level name is bound to; report it if one is unknown."""
        values = self.scope.values(node.id)
        if not values or any(v is None for v in values):
            self.report(node)
            return
        if node.id in self._resolving:
            return
        self._resolving.add(node.id)
        try:
            for value in values:
                assert value is not None
                check(value)
        finally:
            self._resolving.discard(node.id)

    def quietly(self, check: Callable[[ast.expr, frozenset[str]], None], node: ast.expr, names: set[str]) -> bool:
        """Whether ``check`` finds nothing in ``node``, without reporting what it finds."""
        count = len(self.findings)
        check(node, frozenset(names))
        clean = len(self.findings) == count
        del self.findings[count:]
        return clean

    def allows(self, node: ast.expr) -> bool:
        return (self.path, self.scope.name, ast.unparse(node)) in self.allowed


def _called(node: ast.Call) -> str | None:
    if isinstance(node.func, ast.Name):
        return node.func.id
    if isinstance(node.func, ast.Attribute):
        return node.func.attr
    return None


def _is_method(node: ast.expr, name: str) -> bool:
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == name


def _is_str(node: ast.expr) -> bool:
    return (isinstance(node, ast.Constant) and isinstance(node.value, str)) or isinstance(node, ast.JoinedStr)


def _built_here(node: ast.expr) -> bool:
    """Whether a first argument is SQL text built at the call (rather than passed in or returned)."""
    if isinstance(node, ast.JoinedStr):
        return True
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mod)):
        return True
    return _is_method(node, "format")


def scan_source(source: str, path: str, allowed: dict[tuple[str, str, str], str] | None = None) -> list[Finding]:
    """Findings of one module's source text (``path``: its name relative to featurekit/)."""
    allowed = ALLOWED if allowed is None else allowed
    tree = ast.parse(source)
    module = _Function("<module>", tree, None)
    findings: list[Finding] = []
    scopes: list[tuple[_Function, ast.AST]] = [(module, tree)]
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            scopes.append((_Function(node.name, node, module), node))
    for scope, body in scopes:
        checker = _Checker(path, scope, allowed)
        for node in _walk_own(body):
            if not (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in SQL_METHODS
                and node.args
            ):
                continue
            first = node.args[0]
            if _built_here(first):
                checker.text(first)
            elif isinstance(first, ast.Name):
                # A local variable: check the text it was assigned in this function, if it was built here.
                for value in scope.assigned.get(first.id, []):
                    if value is not None and (_built_here(value) or isinstance(value, ast.Constant)):
                        checker.text(value)
        findings += checker.findings
    return findings


def scan_package(package: Path, allowed: dict[tuple[str, str, str], str] | None = None) -> list[Finding]:
    """Findings of every module of a package folder."""
    findings: list[Finding] = []
    for path in sorted(package.rglob("*.py")):
        findings += scan_source(path.read_text(), path.relative_to(package).as_posix(), allowed)
    return findings


def main() -> int:
    """``python -m tests.reliability._sql_scan [PACKAGE]``: the lint step; exit 1 on any finding."""
    import sys

    package = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[2] / "featurekit"
    findings = scan_package(package)
    for finding in findings:
        print(finding, file=sys.stderr)
    return 1 if findings else 0


if __name__ == "__main__":
    raise SystemExit(main())
