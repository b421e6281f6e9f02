"""Drift in the UI: the diff page's follows ``?as_of=`` (each version's data as it was then, like every
other page), and a view's page links to the drift between two windows of its data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import featurekit as fk
from featurekit.example import trips
from featurekit.quality.sides import ViewData
from featurekit.ui import data, pages
from featurekit.ui.html import Links
from tests.conftest import BASIC_FEATURES, RepoFactory, ts


def _canonical(value: object) -> str:
    return json.dumps(value, sort_keys=True, default=list)


def test_the_diff_pages_drift_is_the_drift_as_of_the_pages_registry_version(make_repo: RepoFactory) -> None:
    root: Path = make_repo(data={"data/trips.parquet": trips(drivers=30, days=30, per_day=6)})
    with fk.FeatureStore(root, progress=False) as store:
        store.apply()
        store.materialize(ts(0), ts(10))
        # v2 of the view: a changed function, materialized over fewer days first
        changed = BASIC_FEATURES.replace('pl.col("distance_km")', 'pl.col("distance_km") * 2')
        assert changed != BASIC_FEATURES
        (root / "features.py").write_text(changed)
    with fk.FeatureStore(root, progress=False) as store:
        store.apply()
        store.materialize(ts(0), ts(3))
        early = store.registry.head_commit()
        store.materialize(ts(3), ts(10))  # v2's data grows after `early`

        reader = data.Reader(store)
        then = data.diff_page(reader, "driver_stats", 1, 2, str(early))["drift"]
        now = data.diff_page(reader, "driver_stats", 1, 2, None)["drift"]

        expected_then = store.drift(
            reference=ViewData("driver_stats@v1", as_of=early), current=ViewData("driver_stats@v2", as_of=early)
        )
        head = store.registry.head_commit()  # a page reads as of its registry version, the head included
        expected_now = store.drift(
            reference=ViewData("driver_stats@v1", as_of=head), current=ViewData("driver_stats@v2", as_of=head)
        )
        assert _canonical(then) == _canonical(expected_then.to_dict())
        assert _canonical(now) == _canonical(expected_now.to_dict())
        assert _canonical(then) != _canonical(now)  # v2 had 3 days of rows then, 10 now
        # kept per data version: asked again, the same answers
        assert _canonical(data.diff_page(reader, "driver_stats", 1, 2, str(early))["drift"]) == _canonical(then)


def test_the_window_drift_page_is_the_drift_between_two_windows_of_the_views_data(
    make_repo: RepoFactory,
) -> None:
    root: Path = make_repo(data={"data/trips.parquet": trips(drivers=30, days=30, per_day=6)})
    with fk.FeatureStore(root, progress=False) as store:
        store.apply()
        store.materialize(ts(0), ts(20))
        reader = data.Reader(store)
        windows = ((ts(0), ts(10)), (ts(10), ts(20)))
        found = data.window_drift_page(reader, "driver_stats", windows, None)
        head = store.registry.head_commit()
        expected = store.drift(
            reference=ViewData("driver_stats@v1", ts(0), ts(10), as_of=head),
            current=ViewData("driver_stats@v1", ts(10), ts(20), as_of=head),
        )
        assert _canonical(found["drift"]) == _canonical(expected.to_dict())
        assert found["reference"] == [ts(0).isoformat(), ts(10).isoformat()]
        assert found["version"] == 1
        # the view page offers the form, defaulting to the two halves of what was materialized
        html = pages.view_html(data.view_page(reader, "driver_stats", None), Links(""))
        assert 'action="/views/driver_stats/drift"' in html
        assert f'value="{ts(10).isoformat()}"' in html
        shown = pages.window_drift_html(found, Links(""))
        assert "drift between two windows" in shown
        with pytest.raises(fk.UnknownNameError):
            data.window_drift_page(reader, "no_such_view", windows, None)

        # kept per commit: asked again, the same answer; after a push into the current window, the new one
        assert _canonical(data.window_drift_page(reader, "driver_stats", windows, None)) == _canonical(found)
        raw = trips(drivers=30, days=30, per_day=6).slice(0, 500).to_pandas()
        raw["event_timestamp"] = ts(15)
        raw["offered"], raw["accepted"], raw["distance_km"] = 10, 10, 900.0  # far outside the reference
        store.push("driver_stats", raw, to="online_and_offline")
        pushed = data.window_drift_page(reader, "driver_stats", windows, None)
        head = store.registry.head_commit()
        expected = store.drift(
            reference=ViewData("driver_stats@v1", ts(0), ts(10), as_of=head),
            current=ViewData("driver_stats@v1", ts(10), ts(20), as_of=head),
        )
        assert _canonical(pushed["drift"]) == _canonical(expected.to_dict())
        assert _canonical(pushed["drift"]) != _canonical(found["drift"])
