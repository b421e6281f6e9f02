"""Names and injection: unsafe names are refused, safe ones (and any key values) round-trip exactly.

* hypothesis generates entity, view, feature and join-key names (quotes, ``;``, ``--``, unicode
  look-alikes, ``..``, ``/``, NUL, reserved words, featurekit's own SQL aliases, names around the
  63-character limit, arbitrary text): each is either refused at load/apply with
  InvalidNameError (or a DefinitionError listing it) and nothing is committed, or it works end to
  end (apply, materialize, training set, online lookup) with the right values, and nothing is
  written outside the store;
* case twins are refused, each listing both names;
* online key values with quotes, semicolons, NUL and any unicode round-trip through materialize,
  the training set and lookups, for single and composite keys;
* a static scan (``_sql_scan.py``) proves SQL text in featurekit is built only from ``quote(...)``-d
  identifiers and fixed fragments, and is shown to catch unsafe snippets.
"""

from __future__ import annotations

import re
import string
import tempfile
import textwrap
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

import featurekit as fk
from tests.conftest import RepoFactory, ts
from tests.reliability._sql_scan import scan_package, scan_source
from tests.reliability.conftest import PROJECT, repo_listing

# The documented rule (RELIABILITY.md, promise 6; featurekit/names.py): the oracle of this suite.
VALID = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
RESERVED_PREFIX = "__fk"
TIMESTAMPS = ("event_timestamp", "created")

FEATURES = """
from datetime import timedelta
import polars as pl
import featurekit as fk

entity = fk.Entity({entity!r}, join_keys=[{key!r}])
source = fk.FileSource("data/rows.parquet", created_timestamp_field="created")

def _function(rows: pl.DataFrame) -> pl.DataFrame:
    return rows.select(
        pl.col({source_key!r}).alias({key!r}), "event_timestamp", "created", pl.col("src_value").alias({feature!r})
    )

_function.__name__ = {view!r}  # a view's name is its function's name: any text can get there
view = fk.feature_view(entity=entity, source=source, ttl={ttl})(_function)
"""

DEFAULTS = {"entity": "driver", "key": "driver_id", "view": "stats", "feature": "km"}
KEY_VALUES = ["a'b", 'x";-- DROP TABLE t', "\u00fc\u0308"]
EVENTS = [ts(0), ts(1), ts(2)]
LOOKUP_AT = ts(2.5)
SETTINGS = settings(
    max_examples=30,
    deadline=None,
    derandomize=True,  # fixed examples: the same names on every run and machine
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


def utc(values: list[Any]) -> pa.Array:
    return pa.array(values, pa.timestamp("us", tz="UTC"))


def valid(name: str) -> bool:
    return bool(VALID.fullmatch(name)) and not name.lower().startswith(RESERVED_PREFIX)


def source_key(key: str) -> str:
    # The source column holding the key is named like it unless that would clash with the file's
    # other columns (then the function renames it; refused names never reach the file anyway).
    return "k_src" if key.lower() in {*TIMESTAMPS, "src_value"} else key


def write_repo(base: Path, names: dict[str, str], ttl: bool) -> Path:
    root = RepoFactory(base)(
        FEATURES.format(**names, source_key=source_key(names["key"]), ttl="timedelta(days=2)" if ttl else "None"),
        data={
            "data/rows.parquet": pa.table(
                {
                    source_key(names["key"]): KEY_VALUES,
                    "event_timestamp": utc(EVENTS),
                    "created": utc(EVENTS),
                    "src_value": [1.0, 2.0, 3.0],
                }
            )
        },
        config="offline:\n  batch_rows: 2\n  threads: 1\n",  # several batches: the key reaches hash(...)
    )
    return root


def expected_values(ttl: bool) -> list[float | None]:
    # at 2.5 days a 2-day TTL hides the row of day 0
    return [None, 2.0, 3.0] if ttl else [1.0, 2.0, 3.0]


def lists_name(error: Exception, name: str) -> bool:
    """Whether an error message names ``name`` (quoted, as messages show names; clashes may lowercase it)."""
    text = str(error)
    return repr(name) in text or repr(name.lower()) in text


def check_name(position: str, name: str, ttl: bool, *, valid_must_work: bool = True) -> None:
    """Refused at load/apply naming it, with nothing committed; or a full, correct round trip.

    With ``valid_must_work`` a name the documented rule allows must not be refused.
    """
    names = {**DEFAULTS, position: name}
    with tempfile.TemporaryDirectory() as tmp:
        root = write_repo(Path(tmp), names, ttl)
        files = repo_listing(root)
        with fk.FeatureStore(root, progress=False) as store:
            refused: fk.DefinitionError | None = None  # InvalidNameError is a DefinitionError
            try:
                store.apply()
            except fk.DefinitionError as exc:  # e.g. a join key named like a timestamp field
                refused = exc
            if refused is not None:
                assert lists_name(refused, name), str(refused)
                assert store.registry.commits() == []
                assert not (valid_must_work and should_accept(position, name)), f"valid {name!r} refused: {refused}"
                return
            assert should_accept(position, name), f"unsafe {position} name {name!r} was accepted"
            store.materialize(ts(0), ts(5))
            ref = f"{names['view']}:{names['feature']}"
            spine = pa.table({names["key"]: KEY_VALUES, "event_timestamp": utc([LOOKUP_AT] * 3)})
            training = store.training_set(spine, [ref]).to_arrow()
            assert training.column(names["feature"]).to_pylist() == expected_values(ttl)
            assert training.column(names["key"]).to_pylist() == KEY_VALUES
            online = store.online_features({names["key"]: KEY_VALUES}, [ref], at=LOOKUP_AT).to_dict()
            assert online == {names["key"]: KEY_VALUES, names["feature"]: expected_values(ttl)}
            store_root = store.store_root
        assert repo_listing(root) == files  # nothing outside the store
        assert (store_root / "offline" / names["view"].lower() / "v1").is_dir()


def should_accept(position: str, name: str) -> bool:
    if not valid(name):
        return False
    if position == "key":
        return name.lower() not in TIMESTAMPS
    if position == "feature":
        return name.lower() not in {*TIMESTAMPS, DEFAULTS["key"]}
    if position == "view":
        return not name.lower().startswith("sqlite_")  # SQLite reserves those table names
    return True


# -- generated names -------------------------------------------------------------------------------

IDENTIFIER = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,15}", fullmatch=True)
UNSAFE_PARTS = st.sampled_from(
    ['"', "'", ";", "--", "/", "..", "\x00", " ", "\\", "\n", "\t", "`", "(", ")", "*", "%", ".", ",", "-", "=", "$"]
)
LOOKALIKES = st.sampled_from(
    [
        "\u0456",  # Cyrillic i
        "\u0430",  # Cyrillic a
        "\u03bf",  # Greek omicron
        "\uff21",  # fullwidth A
        "\u212a",  # Kelvin sign (lowercases to k)
        "\ufb01",  # fi ligature (NFKC: fi)
        "\u0131",  # dotless i
        "\u017f",  # long s (uppercases to S)
        "\u00e9",  # e acute
        "\u0301",  # combining acute
        "\u200b",  # zero-width space
        "\u2024",  # one dot leader
    ]
)
RESERVED_WORDS = st.sampled_from(
    [
        # SQL keywords (quoted identifiers in DuckDB and SQLite)
        "select",
        "from",
        "where",
        "table",
        "order",
        "group",
        "null",
        "true",
        "default",
        "all",
        "key",
        "values",
        "union",
        "drop",
        "index",
        "primary",
        "SELECT",
        "Order",
        # featurekit's own aliases and columns in its SQL, and SQLite/DuckDB internal names
        "v",
        "V",
        "__t",
        "__c",
        "s",
        "f",
        "w",
        "j0",
        "spine",
        "v0",
        "src",
        "__none",
        "excluded",
        "rowid",
        "oid",
        "_rowid_",
        "main",
        "temp",
        "sqlite_stats",
        "SQLITE_x",
        "filename",
        "file_row_number",
        "__fk_row",
        "__FK_bucket",
        "__fk",
        "_",
        "event_timestamp",
        "Event_Timestamp",
        "created",
        "driver_id",
        "DRIVER_ID",
        "src_value",
    ]
)
AROUND_THE_LIMIT = st.integers(60, 66).flatmap(
    lambda n: st.from_regex(rf"[A-Za-z_][A-Za-z0-9_]{{{n - 1}}}", fullmatch=True)
)
NAMES = st.one_of(
    IDENTIFIER,
    RESERVED_WORDS,
    AROUND_THE_LIMIT,
    st.builds(
        lambda head, bad, tail: head + bad + tail,
        IDENTIFIER,
        st.one_of(UNSAFE_PARTS, LOOKALIKES),
        st.text(alphabet=string.ascii_letters + "_", max_size=4),
    ),
    st.text(max_size=12),
)


@pytest.mark.slow
@pytest.mark.parametrize("position", ["entity", "key", "view", "feature"])
@SETTINGS
@given(name=NAMES, ttl=st.booleans())
# Found in CI: a NUL inside a feature column name made polars panic while exporting the output.
@example(name="P\u00d26\u00fa\u0091x\u00c5\x00\x0f\u0086\u00d8", ttl=False)
def test_generated_names_are_refused_or_round_trip(position: str, name: str, ttl: bool):
    # A function cannot return two columns of one name: that is not a name check, leave it out.
    assume(not (position == "feature" and name in {*TIMESTAMPS, DEFAULTS["key"]}))
    check_name(position, name, ttl)


@pytest.mark.parametrize(
    ("position", "name"),
    [
        ("entity", 'dri"ver'),
        ("entity", "driver; DROP TABLE commits"),
        ("key", "id--"),
        ("key", "..\u0000"),
        ("view", "../../etc"),
        ("view", "stats/x"),
        ("view", "st\u0430ts"),  # Cyrillic a
        ("view", "x" * 64),
        ("feature", "km'"),
        ("feature", "\uff2bm"),  # fullwidth K
        ("feature", "__fk_key"),
        ("key", "Event_Timestamp"),
    ],
)
def test_sample_unsafe_names_are_refused(position: str, name: str):
    assert not should_accept(position, name)
    check_name(position, name, ttl=True)


@pytest.mark.parametrize(
    ("position", "name"),
    [("entity", "select"), ("key", "order"), ("view", "x" * 63), ("feature", "default"), ("key", "__c")],
)
def test_sample_reserved_words_round_trip(position: str, name: str):
    check_name(position, name, ttl=False)


# -- defects found: names the rules accepted that broke a store (now refused, or working) ----------------


def test_view_named_like_sqlite_internal_tables_is_refused():
    check_name("view", "sqlite_stats", ttl=True)
    check_name("view", "SQLITE_x", ttl=False)


@pytest.mark.parametrize("ttl", [True, False])
def test_join_key_named_like_an_internal_alias_works(ttl: bool):
    check_name("key", "v", ttl=ttl)
    check_name("key", "__t", ttl=ttl)
    check_name("key", "__c", ttl=ttl)


# -- case twins ----------------------------------------------------------------------------------------

TWIN_HEADER = """
import polars as pl
import featurekit as fk

source = fk.FileSource("data/rows.parquet", created_timestamp_field="created")
"""


def twin_repo(base: Path, body: str) -> Path:
    return RepoFactory(base)(
        TWIN_HEADER + textwrap.dedent(body),
        data={
            "data/rows.parquet": pa.table(
                {
                    "driver_id": KEY_VALUES,
                    "event_timestamp": utc(EVENTS),
                    "created": utc(EVENTS),
                    "src_value": [1.0] * 3,
                }
            )
        },
    )


VIEW = """
@fk.feature_view(entity={entity}, source=source)
def {name}(rows: pl.DataFrame) -> pl.DataFrame:
    return rows.select("driver_id", "event_timestamp", "created", {features})
"""


@pytest.mark.parametrize(
    ("body", "twins"),
    [
        (
            'e = fk.Entity("driver", join_keys=["driver_id"])\n'
            + VIEW.format(entity="e", name="stats", features="km=pl.col('src_value')")
            + VIEW.format(entity="e", name="Stats", features="km=pl.col('src_value')"),
            ("stats", "Stats"),
        ),
        (
            'a = fk.Entity("driver", join_keys=["driver_id"])\nb = fk.Entity("DRIVER", join_keys=["driver_id"])\n'
            + VIEW.format(entity="[a, b]", name="stats", features="km=pl.col('src_value')"),
            ("driver", "DRIVER"),
        ),
        (
            'e = fk.Entity("driver", join_keys=["driver_id", "DRIVER_ID"])\n'
            + VIEW.format(entity="e", name="stats", features="km=pl.col('src_value')"),
            ("driver_id", "DRIVER_ID"),
        ),
        (
            'e = fk.Entity("driver", join_keys=["driver_id"])\n'
            + VIEW.format(entity="e", name="stats", features="km=pl.col('src_value'), KM=pl.col('src_value')"),
            ("km", "KM"),
        ),
        (
            'e = fk.Entity("driver", join_keys=["driver_id"])\n'
            + VIEW.format(entity="e", name="stats", features="Driver_Id=pl.col('src_value')"),
            ("driver_id", "Driver_Id"),
        ),
    ],
    ids=["views", "entities", "join-keys", "features", "feature-and-key"],
)
def test_case_twins_are_refused_listing_both(tmp_path: Path, body: str, twins: tuple[str, str]):
    root = twin_repo(tmp_path, body)
    with fk.FeatureStore(root, progress=False) as store:
        with pytest.raises(fk.DefinitionError) as caught:
            store.apply()
        assert store.registry.commits() == []
    for name in twins:
        assert lists_name(caught.value, name), (name, str(caught.value))


# -- key values ------------------------------------------------------------------------------------

KEY_FEATURES = """
import polars as pl
import featurekit as fk

entity = fk.Entity("thing", join_keys={keys!r})
source = fk.FileSource("data/rows.parquet")

@fk.feature_view(entity=entity, source=source)
def things(rows: pl.DataFrame) -> pl.DataFrame:
    return rows.select(*{keys!r}, "event_timestamp", value=pl.col("value"))
"""


def round_trip_keys(columns: dict[str, pa.Array], absent: dict[str, list[Any]]) -> None:
    """Materialize one row per key; the training set and lookups return each key's own value."""
    keys = list(columns)
    count = len(columns[keys[0]])
    values = [float(i) for i in range(count)]
    with tempfile.TemporaryDirectory() as tmp:
        data = pa.table({**columns, "event_timestamp": utc([ts(1)] * count), "value": values})
        root = RepoFactory(Path(tmp))(KEY_FEATURES.format(keys=keys), data={"data/rows.parquet": data})
        with fk.FeatureStore(root, progress=False) as store:
            store.apply()
            store.materialize(ts(0), ts(5))
            spine = pa.table({**columns, "event_timestamp": utc([ts(2)] * count)})
            training = store.training_set(spine, ["things:value"]).to_arrow()
            assert training.column("value").to_pylist() == values
            for key in keys:
                assert training.column(key).to_pylist() == columns[key].to_pylist()
            wanted = {k: columns[k].to_pylist() for k in keys}
            online = store.online_features(wanted, ["things:value"], at=ts(2)).to_dict()
            assert online == {**wanted, "value": values}
            if absent:
                missing = store.online_features(absent, ["things:value"], at=ts(2)).to_dict()
                assert missing["value"] == [None] * len(next(iter(absent.values())))


INJECTION_TEXT = st.one_of(
    st.text(max_size=10),
    st.sampled_from(["'", '"', "';--", '"; DROP TABLE things__v1; --', "\x00", "a\x00b", "\u00e9", "e\u0301", "", " "]),
)


@pytest.mark.slow
@SETTINGS
@given(values=st.lists(INJECTION_TEXT, min_size=1, max_size=6, unique=True))
def test_string_key_values_round_trip(values: list[str]):
    # A key differing only by case or normalization is another key: looked up, it is missing.
    others = [v for v in {v.upper() for v in values} | {v + "\u0301" for v in values} if v not in values]
    round_trip_keys({"name": pa.array(values, pa.string())}, {"name": others} if others else {})


@pytest.mark.slow
@SETTINGS
@given(pairs=st.lists(st.tuples(INJECTION_TEXT, st.integers(-(2**63), 2**63 - 1)), min_size=1, max_size=6, unique=True))
def test_composite_key_values_round_trip(pairs: list[tuple[str, int]]):
    names, numbers = zip(*pairs, strict=True)
    # Swapped parts and concatenation twins are other keys.
    absent = [(n + str(k), 0) for n, k in pairs if (n + str(k), 0) not in pairs]
    round_trip_keys(
        {"name": pa.array(list(names), pa.string()), "n": pa.array(list(numbers), pa.int64())},
        {"name": [a for a, _ in absent], "n": [b for _, b in absent]} if absent else {},
    )


# -- SQL built from quoted identifiers only --------------------------------------------------------


def test_featurekit_sql_is_built_from_quoted_identifiers_and_fixed_fragments():
    findings = scan_package(PROJECT / "featurekit")
    assert findings == [], "\n".join(str(f) for f in findings)


@pytest.mark.parametrize(
    ("snippet", "culprit"),
    [
        ("def f(con, table):\n    con.execute(f'SELECT * FROM {table}')", "table"),
        ("def f(con, name):\n    con.sql('SELECT * FROM t WHERE x = %s' % name)", "name"),
        ("def f(con, name):\n    con.execute('SELECT {}'.format(name))", "name"),
        ("def f(con, name):\n    sql = f\"DELETE FROM t WHERE y = '{name}'\"\n    con.executemany(sql, [])", "name"),
        ("def f(con, names):\n    con.query('SELECT ' + ', '.join(names))", "names"),
        ("def f(con, v):\n    con.execute(f'SELECT {quote(v)} FROM t WHERE x = {v}')", "v"),
        ("def f(con, ts):\n    con.execute(f'SELECT * FROM t WHERE at = {str(ts)}')", "str(ts)"),
        (
            "def f(con, user):\n    where = f\"name = '{user}'\"\n    con.execute(f'SELECT * FROM t WHERE {where}')",
            "user",
        ),
        ("def f(con, t):\n    cols = ', '.join(c for c in t.columns)\n    con.sql(f'SELECT {cols} FROM x')", "c"),
        ("def f(self, t):\n    self.con.execute(f'DROP TABLE {t.name}')", "t.name"),
        ("def f(con, n):\n    con.execute(f'SET threads = {float(n)}')", "float(n)"),
    ],
)
def test_the_scan_catches_sql_built_from_unquoted_text(snippet: str, culprit: str):
    findings = scan_source(snippet, "snippet.py", allowed={})
    assert [f.expression for f in findings] == [culprit]
    assert findings[0].path == "snippet.py"
    assert findings[0].function in ("f",)


@pytest.mark.parametrize(
    "snippet",
    [
        "ROW = '__fk_row'\ndef f(con, t):\n    con.execute(f'SELECT {ROW} FROM {quote(t)}')",
        "def f(con, cols):\n    columns = ', '.join(quote(c) for c in cols)\n"
        "    con.execute(f'CREATE TABLE x ({columns})')",
        "def f(con, n):\n    con.execute(f'SET threads = {int(n)}')",
        "def f(con, keys):\n    ks = [quote(k) for k in keys]\n    on = ' AND '.join(f'a.{k} = b.{k}' for k in ks)\n"
        "    con.sql(f'SELECT 1 FROM a JOIN b ON {on}')",
        "def f(con, flag):\n    con.execute('SELECT 1' + (' WHERE x' if flag else ''))",
        "def f(con, value):\n    con.execute('SELECT * FROM t WHERE x = ?', [value])",
        "def f(con, sql):\n    con.execute(sql)",  # passed in: checked where it is built
    ],
)
def test_the_scan_accepts_quoted_identifiers_and_constants(snippet: str):
    assert scan_source(snippet, "snippet.py", allowed={}) == []


def test_the_allow_list_only_excuses_its_own_function():
    snippet = "def other(con, select):\n    con.sql(f'SELECT {select} FROM t')"
    assert [f.expression for f in scan_source(snippet, "offline/sources.py")] == ["select"]
