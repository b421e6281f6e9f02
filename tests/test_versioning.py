"""Versions cover everything of the repo a view reaches; a repo is imported afresh on each load."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import polars as pl
import pytest

import featurekit as fk
from featurekit.repo import load_repo
from tests.conftest import BASIC_FEATURES, trips_table, ts

ROWS = [(1, ts(0), ts(0), 1, 2, 1.0), (2, ts(1), ts(1), 3, 4, 3.0)]

# The view reads a helper function and a dict constant of another module, each imported differently.
FROM_IMPORT = BASIC_FEATURES.replace(
    "import featurekit as fk\n", "import featurekit as fk\nfrom helpers import scale\n"
).replace('avg_trip_km=pl.col("distance_km"),', 'avg_trip_km=scale(pl.col("distance_km")),')
MODULE_IMPORT = BASIC_FEATURES.replace(
    "import featurekit as fk\n", "import featurekit as fk\nimport helpers\n"
).replace('avg_trip_km=pl.col("distance_km"),', 'avg_trip_km=pl.col("distance_km") * helpers.WEIGHTS["km"],')
HELPERS = '''
"""Helpers shared by feature modules."""

WEIGHTS = {"km": 2.0, "other": [1, 2]}


def scale(column):
    """Doubles a column."""
    return column * WEIGHTS["km"]
'''


def repo_with_helpers(make_repo, features: str, helpers: str = HELPERS) -> Path:
    root = make_repo(features, data={"data/trips.parquet": trips_table(ROWS)})
    (root / "helpers.py").write_text(textwrap.dedent(helpers))
    return root


def kinds(store: fk.FeatureStore) -> list[str]:
    return [c.kind for c in store.apply().changes]


@pytest.mark.parametrize("features", [FROM_IMPORT, MODULE_IMPORT], ids=["from-import", "module-attribute"])
@pytest.mark.parametrize(
    "edit",
    [
        ('WEIGHTS = {"km": 2.0', 'WEIGHTS = {"km": 3.0'),  # a dict constant
        ('"other": [1, 2]', '"other": [1, 3]'),  # a list nested in it
    ],
    ids=["dict-value", "nested-list"],
)
def test_edits_of_another_module_make_a_new_version(make_repo, open_store, features, edit):
    root = repo_with_helpers(make_repo, features)
    assert kinds(open_store(root)) == ["new"]
    (root / "helpers.py").write_text(textwrap.dedent(HELPERS).replace(*edit))
    assert kinds(open_store(root)) == ["changed"]


def test_a_helper_function_of_another_module_is_versioned(make_repo, open_store):
    root = repo_with_helpers(make_repo, FROM_IMPORT)
    assert kinds(open_store(root)) == ["new"]
    (root / "helpers.py").write_text(
        textwrap.dedent(HELPERS).replace('return column * WEIGHTS["km"]', 'return column * WEIGHTS["km"] + 1')
    )
    assert kinds(open_store(root)) == ["changed"]


def test_docstrings_and_comments_of_helpers_are_not_versioned(make_repo, open_store):
    root = repo_with_helpers(make_repo, FROM_IMPORT)
    assert kinds(open_store(root)) == ["new"]
    edited = textwrap.dedent(HELPERS).replace("Doubles a column.", "Scales a column.")
    (root / "helpers.py").write_text(edited.replace("def scale(column):", "# a comment\ndef scale(column):"))
    assert kinds(open_store(root)) == ["unchanged"]


def test_same_module_containers_and_classes_are_versioned(make_repo, open_store):
    features = BASIC_FEATURES.replace('avg_trip_km=pl.col("distance_km"),', "avg_trip_km=Scaler().apply(),") + (
        '\n\nLIMITS = {"km": [1.0, 2.0]}\n\n'
        'class Scaler:\n    def apply(self):\n        return pl.col("distance_km") * LIMITS["km"][0]\n'
    )
    root = make_repo(features, data={"data/trips.parquet": trips_table(ROWS)})
    assert kinds(open_store(root)) == ["new"]
    (root / "features.py").write_text(features.replace('"km": [1.0, 2.0]', '"km": [5.0, 2.0]'))
    assert kinds(open_store(root)) == ["changed"]
    (root / "features.py").write_text(features.replace("* LIMITS", "+ LIMITS"))
    assert kinds(open_store(root)) == ["changed"]


def test_a_new_store_in_the_same_process_runs_the_edited_helper(make_repo, open_store):
    """The notebook case: helpers.py edited (same size, same second), then a new FeatureStore."""
    root = repo_with_helpers(make_repo, FROM_IMPORT)
    first = open_store(root)
    first.apply()
    first.materialize(ts(0), ts(5))
    (root / "helpers.py").write_text(textwrap.dedent(HELPERS).replace('"km": 2.0', '"km": 3.0'))
    stale = open_store(root)
    with pytest.raises(fk.NotAppliedError, match="driver_stats"):
        stale.materialize(ts(0), ts(5))  # it would write the new code's values into v1
    again = open_store(root)
    assert kinds(again) == ["changed"]
    again.materialize(ts(0), ts(5))
    spine = pl.DataFrame({"driver_id": [1], "event_timestamp": [ts(0)]})
    assert again.training_set(spine, ["driver_stats:avg_trip_km"]).to_polars()["avg_trip_km"].to_list() == [3.0]
    assert first.training_set(spine, ["driver_stats@v1:avg_trip_km"]).to_polars()["avg_trip_km"].to_list() == [2.0]


def test_two_repos_in_one_process_each_import_their_own_helpers(make_repo):
    one = repo_with_helpers(make_repo, FROM_IMPORT)
    two = repo_with_helpers(make_repo, FROM_IMPORT, HELPERS.replace('"km": 2.0', '"km": 7.0'))
    results = []
    for root in (one, two, one):
        view = load_repo(root, ["*.py"]).views["driver_stats"]
        frame = pl.DataFrame({"distance_km": [1.0]}).select(
            out=view.function.__globals__["scale"](pl.col("distance_km"))
        )
        results.append(frame["out"].to_list())
    assert results == [[2.0], [7.0], [2.0]]


def test_a_value_that_cannot_be_versioned_is_a_definition_error(make_repo, open_store):
    features = BASIC_FEATURES.replace(
        "import featurekit as fk\n", "import featurekit as fk\nimport threading, logging\n"
    )
    features = features.replace(
        "    return trips.select(", '    LOG.debug("a logger is fine")\n    return trips.select('
    )
    features = features.replace(
        'avg_trip_km=pl.col("distance_km"),', 'avg_trip_km=pl.col("distance_km") + GUARD.locked(),'
    )
    features += '\n\nGUARD = threading.Lock()\nLOG = logging.getLogger("trips")\n'
    root = make_repo(features, data={"data/trips.parquet": trips_table(ROWS)})
    with pytest.raises(fk.DefinitionError) as caught:
        open_store(root).apply()
    line = features.splitlines().index(next(x for x in features.splitlines() if "GUARD.locked" in x)) + 1
    message = str(caught.value)
    assert "feature view 'driver_stats'" in message
    assert "'GUARD'" in message
    assert f"{root / 'features.py'}:{line}" in message
    assert "no stable representation" in message
    assert "'LOG'" not in message


def test_a_repo_module_used_whole_is_versioned_whole(make_repo, open_store):
    features = MODULE_IMPORT.replace(
        'pl.col("distance_km") * helpers.WEIGHTS["km"]', 'getattr(helpers, "scale")(pl.col("distance_km"))'
    )
    root = repo_with_helpers(make_repo, features)
    assert kinds(open_store(root)) == ["new"]
    (root / "helpers.py").write_text(textwrap.dedent(HELPERS) + "\n\ndef other():\n    return 1\n")
    assert kinds(open_store(root)) == ["changed"]


def test_two_views_with_one_function_name_in_one_module(make_repo, open_store):
    second = BASIC_FEATURES.split("@fk.feature_view", 1)[1].replace("avg_trip_km=", "km=")
    features = BASIC_FEATURES + '\nbad = fk.Entity("bad", join_keys=[])\n\n@fk.feature_view' + second
    root = make_repo(features, data={"data/trips.parquet": trips_table(ROWS)})
    with pytest.raises(fk.DefinitionError) as caught:
        open_store(root).apply()
    lines = [i + 1 for i, text in enumerate(features.splitlines()) if text.startswith("@fk.feature_view")]
    assert len(lines) == 2
    where = re.escape(str(root / "features.py"))
    assert re.search(
        rf"'driver_stats' is defined 2 times.*{where}:{lines[0]} and {where}:{lines[1]}", str(caught.value)
    )


def test_an_edit_with_the_same_size_and_mtime_is_imported(make_repo, monkeypatch):
    """A ``.pyc`` is only checked against its source's size and mtime in seconds: it must not be trusted."""
    import os

    monkeypatch.setattr("sys.dont_write_bytecode", False)
    root = repo_with_helpers(make_repo, FROM_IMPORT)
    stamp = (root / "helpers.py").stat().st_mtime_ns
    hashes = set()
    for operator, expected in (("*", 8.0), ("/", 2.0)):  # one character of the helper's body
        helpers = root / "helpers.py"
        helpers.write_text(textwrap.dedent(HELPERS).replace("return column *", f"return column {operator}"))
        os.utime(helpers, ns=(stamp, stamp))
        view = load_repo(root, ["*.py"]).views["driver_stats"]
        scale = view.function.__globals__["scale"]
        assert pl.select(out=scale(pl.lit(4.0)))["out"].to_list() == [expected]  # the edited code runs
        hashes.add(view.code_hash)  # and the hash is of the edited code
    assert len(hashes) == 2


def test_lookup_tables_and_imports_inside_the_function_are_versioned(make_repo, open_store):
    body = (
        "    try:\n        import not_installed_anywhere  # an optional dependency may be missing\n"
        "    except ImportError:\n        pass\n"
        "    import helpers\n"
        '    factor = LOOKUP["factor"][0] * helpers.WEIGHTS["km"]\n'
        "    return trips.select("
    )
    features = (
        BASIC_FEATURES.replace("    return trips.select(", body).replace(
            'avg_trip_km=pl.col("distance_km"),', 'avg_trip_km=pl.col("distance_km") * factor,'
        )
        + '\n\nLOOKUP = pl.DataFrame({"factor": [1.5]})\n'
    )
    root = repo_with_helpers(make_repo, features)
    assert kinds(open_store(root)) == ["new"]
    (root / "features.py").write_text(textwrap.dedent(features).replace("[1.5]", "[2.5]"))
    assert kinds(open_store(root)) == ["changed"]
    (root / "helpers.py").write_text(textwrap.dedent(HELPERS).replace('"km": 2.0', '"km": 4.0'))
    assert kinds(open_store(root)) == ["changed"]


def test_in_repo_tells_repo_files_from_siblings_hidden_folders_and_links(tmp_path: Path) -> None:
    from featurekit.versioning import in_repo

    root = tmp_path / "repo"
    for folder in ("pkg/sub", ".venv/lib", "pkg/__pycache__"):
        (root / folder).mkdir(parents=True)
    (tmp_path / "repo2").mkdir()
    (tmp_path / "elsewhere").symlink_to(root / "pkg")
    (tmp_path / "site-packages").mkdir()
    (tmp_path / "site-packages" / "pkg").symlink_to(root / "pkg")  # as flit install --symlink links it
    resolved = root.resolve()
    assert in_repo(str(root / "features.py"), resolved)
    assert in_repo(str(root / "pkg" / "sub" / "helpers.py"), resolved)
    assert in_repo(str(tmp_path / "elsewhere" / "helpers.py"), resolved)  # through a link into the repo
    assert in_repo(str(tmp_path / "site-packages" / "pkg" / "helpers.py"), resolved)
    assert not in_repo(str(tmp_path / "repo2" / "features.py"), resolved)  # a sibling sharing the prefix
    assert not in_repo(str(root / ".venv" / "lib" / "thing.py"), resolved)
    assert not in_repo(str(root / "pkg" / "__pycache__" / "x.py"), resolved)
    assert not in_repo(None, resolved)
