"""What each page shows, as JSON-ready dicts (the pages' ``.json`` twins), read from the store's API objects.

The pages render exactly these dicts, so a page and its twin never disagree. They come from the
objects the CLI prints (:class:`~featurekit.info.ViewInfo`, the registry's records, the history
and diff of :mod:`featurekit.timetravel`), read at one registry version: the head, or the moment
``?as_of=`` names (:func:`featurekit.timetravel.registry_version`).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from featurekit.errors import StorageError, UnknownNameError, did_you_mean
from featurekit.info import ViewInfo
from featurekit.offline import freshness as fresh_records
from featurekit.online.loading import table_name
from featurekit.registry import ActiveView, Materialization, Registry, ViewVersion
from featurekit.store import FeatureStore
from featurekit.timetravel import diff, registry_version
from featurekit.ui import quality

HISTORY_PAGE = 200  # commits per page of the history
TIMELINE = 200  # materializations shown on a view's page (the newest)


Windows = tuple[tuple[datetime, datetime], tuple[datetime, datetime]]  # (reference, current), each [start, end)

K = TypeVar("K")
V = TypeVar("V")


class _Kept(Generic[K, V]):
    """The values of the last ``size`` keys asked for (least recently used first out). Thread-safe."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._lock = threading.Lock()
        self._values: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | None:
        with self._lock:
            if key not in self._values:
                return None
            self._values.move_to_end(key)
            return self._values[key]

    def put(self, key: K, value: V) -> None:
        with self._lock:
            self._values[key] = value
            self._values.move_to_end(key)
            while len(self._values) > self.size:
                self._values.popitem(last=False)


class Reader:
    """What the pages read of one store's registry, with what can never change decoded once.

    The registry never updates or deletes, so the active views at a registry version read the
    same every time: the active sets of the last :data:`KEPT` applies asked for are kept, instead
    of decoding hundreds of view versions' schemas and definitions on each request. So do a data
    version's profile (merged from its commits' stored states), the drift between two data
    versions and the drift between two windows of one: the last :data:`KEPT_QUALITY` of each are
    kept, by the commits that made the data versions (a commit never changes what it made).
    Thread-safe: requests on several threads share one reader.
    """

    KEPT = 8
    KEPT_QUALITY = 64

    def __init__(self, store: FeatureStore) -> None:
        self.store = store
        self.registry = store.registry
        self._active: _Kept[int, dict[str, ActiveView]] = _Kept(self.KEPT)
        self._profiles: _Kept[tuple[int, int], dict[str, Any]] = _Kept(self.KEPT_QUALITY)
        self._drifts: _Kept[tuple[int, int, int, int], dict[str, Any]] = _Kept(self.KEPT_QUALITY)
        self._window_drifts: _Kept[tuple[int, int, Windows], dict[str, Any]] = _Kept(self.KEPT_QUALITY)

    def moment(self, as_of: str | None) -> int:
        """The registry version a page shows: ``as_of`` (a number or an ISO time), else the head (0: empty)."""
        if as_of is None:
            return self.registry.head_commit()
        return registry_version(self.registry, int(as_of) if as_of.isdigit() else as_of)

    def active(self, at: int) -> dict[str, ActiveView]:
        """:meth:`Registry.active` at registry version ``at`` (nothing before the first commit)."""
        if not at:
            return {}
        newest_apply = self.registry.head_apply()
        key = newest_apply if at >= newest_apply else at  # materializations since the last apply change nothing
        found = self._active.get(key)
        if found is None:
            found = self.registry.active(at)
            self._active.put(key, found)
        return found

    def _current(self, version: ViewVersion, at: int | None) -> Materialization | None:
        """The commit that made the version's data version at ``at`` (None: none yet, or gc removed it)."""
        last = self.registry.last_materialization(version.id, at)
        if last is None or self.registry.removal(version.id, last.data_version) is not None:
            return None  # the store says why, on every request
        return last

    def profile(self, version: ViewVersion, at: int) -> dict[str, Any] | None:
        """:func:`featurekit.ui.quality.profile` of the version's data version at ``at``, kept once made."""
        last = self._current(version, at)
        if last is None:
            return quality.profile(self.store, version, at)
        key = (version.id, last.commit_id)
        found = self._profiles.get(key)
        if found is None:
            found = quality.profile(self.store, version, at)
            if found is not None and "error" not in found:  # an error may pass (a locked file, say)
                self._profiles.put(key, found)
        return found

    def drift(self, view: str, old: int, new: int, at: int) -> dict[str, Any] | None:
        """:func:`featurekit.ui.quality.drift` between two versions' data versions at registry
        version ``at``, kept once made (per the two commits that made those data versions)."""
        reference, current = self.registry.version(view, old), self.registry.version(view, new)
        a, b = self._current(reference, at), self._current(current, at)
        if a is None or b is None:
            return quality.drift(self.store, view, old, new, at)
        key = (reference.id, current.id, a.commit_id, b.commit_id)
        found = self._drifts.get(key)
        if found is None:
            found = quality.drift(self.store, view, old, new, at)
            if found is not None and "error" not in found:
                self._drifts.put(key, found)
        return found

    def window_drift(self, version: ViewVersion, windows: Windows, at: int) -> dict[str, Any] | None:
        """:func:`featurekit.ui.quality.window_drift` of a version's data version at registry version
        ``at``, kept once made (per the commit that made that data version, and the two windows)."""
        last = self._current(version, at)
        if last is None:
            return quality.window_drift(self.store, version, *windows, at)
        key = (version.id, last.commit_id, windows)
        found = self._window_drifts.get(key)
        if found is None:
            found = quality.window_drift(self.store, version, *windows, at)
            if found is not None and "error" not in found:
                self._window_drifts.put(key, found)
        return found


def kind(version: ViewVersion) -> str:
    return str(version.definition.get("kind") or "batch")


def features(version: ViewVersion) -> list[dict[str, str | None]]:
    """Each feature with its dtype (a feature set's are references to other views' features)."""
    definition = version.definition
    if kind(version) == "feature_set":
        return [{"name": f, "dtype": None} for f in version.features]
    if version.is_window:
        return [{"name": f, "dtype": str(version.feature_type(f))} for f in version.features]
    schema = definition.get("schema") or {}
    return [{"name": f, "dtype": str(schema.get(f)) if f in schema else None} for f in version.features]


def _iso(moment_: datetime | None) -> str | None:
    return None if moment_ is None else moment_.isoformat()


def materialization(m: Materialization, fresh: fresh_records.Freshness | None) -> dict[str, Any]:
    return {
        "registry_version": m.commit_id,
        "committed_at": m.committed_at.isoformat(),
        "mode": m.mode,
        "window_start": m.window_start.isoformat(),
        "window_end": m.window_end.isoformat(),
        "rows": m.rows,
        "data_version": m.data_version,
        "watermark": _iso(m.watermark),
        "started_at": None if fresh is None else fresh.started_at.isoformat(),
        "duration_s": None if fresh is None else round((m.committed_at - fresh.started_at).total_seconds(), 3),
    }


def freshness(info: ViewInfo, record: tuple[int, str] | None, now: datetime) -> dict[str, Any] | None:
    """Newest committed event (and its age at ``now``), watermark, last materialization and its duration.

    ``record``: the version's newest freshness record (see :mod:`featurekit.offline.freshness`).
    """
    m = info.materialization
    if m is None:
        return None
    fresh = None if record is None else fresh_records.Freshness.from_record(*record)
    newest = None if fresh is None else fresh.newest_event
    return {
        "newest_event": _iso(newest),
        "newest_event_age_s": None if newest is None else round((now - newest).total_seconds()),
        "watermark": _iso(m.watermark),
        "last_materialization": materialization(
            m, fresh if fresh is not None and fresh.commit_id == m.commit_id else None
        ),
    }


def _freshness_records(registry: Registry, version_id: int, at: int) -> dict[int, fresh_records.Freshness]:
    records = registry.quality(version_id, fresh_records.KIND, at)
    return {commit: fresh_records.Freshness.from_record(commit, payload) for commit, payload in records}


@dataclass(frozen=True)
class Latest:
    """The newest quality records of every view version at one registry version, read once per page."""

    freshness: dict[int, tuple[int, str]]
    checks: dict[int, tuple[int, str]]

    @classmethod
    def read(cls, registry: Registry, at: int) -> Latest:
        return cls(registry.latest_quality(fresh_records.KIND, at), quality.latest_checks(registry, at))


def view_summary(info: ViewInfo, latest: Latest, now: datetime) -> dict[str, Any]:
    """One view as the views page lists it."""
    v = info.version
    definition = v.definition
    computed = kind(v) in ("on_demand", "feature_set")
    return {
        "view": info.name,
        "kind": kind(v),
        "version": v.version,
        "code_hash": v.code_hash,
        "entity": None if computed else list(definition.get("join_keys") or []),
        "features": features(v),
        "owner": info.metadata.get("owner"),
        "tags": info.metadata.get("tags") or {},
        "description": info.metadata.get("description"),
        "freshness": None if computed else freshness(info, latest.freshness.get(v.id), now),
        **_present("checks", quality.checks(latest.checks.get(v.id))),
    }


def _present(key: str, value: dict[str, Any] | None) -> dict[str, Any]:
    """``{key: value}``, or nothing when this featurekit lacks the part (see :mod:`featurekit.ui.quality`)."""
    return {} if value is None else {key: value}


def infos(reader: Reader, at: int) -> list[ViewInfo]:
    """:meth:`FeatureStore.list_views` as of registry version ``at``."""
    last = reader.registry.last_materializations(at)
    return [
        ViewInfo(name, active.version, active.metadata, last.get(active.version.id))
        for name, active in reader.active(at).items()
    ]


def views_page(reader: Reader, as_of: str | None, query: str | None) -> dict[str, Any]:
    """Every view, batch, window and on-demand, and feature set; ``query``: only those with a matching feature."""
    at = reader.moment(as_of)
    now = datetime.now(UTC)
    latest = Latest.read(reader.registry, at)
    needle = (query or "").strip().lower()
    listed = [
        view_summary(info, latest, now)
        for info in infos(reader, at)
        if not needle or any(needle in f.lower() for f in info.version.features)
    ]
    return {"registry_version": at, "as_of": as_of, "query": query or None, "now": now.isoformat(), "views": listed}


def _find(reader: Reader, name: str, at: int) -> ViewInfo:
    found = next(((n, a) for n, a in reader.active(at).items() if n.lower() == name.lower()), None)
    if found is None:
        known = {v.view for v in reader.registry.versions()}
        if not any(k.lower() == name.lower() for k in known):
            raise UnknownNameError(f"no feature view {name!r} in the registry{did_you_mean(name, known)}")
        raise UnknownNameError(f"feature view {name!r} was not applied at registry version {at}")
    applied, active = found
    return ViewInfo(
        applied, active.version, active.metadata, reader.registry.last_materialization(active.version.id, at)
    )


def online_tables(store: FeatureStore, versions: list[ViewVersion]) -> dict[str, Any]:
    """The online tables of the view's versions, or why the online store could not be read."""
    try:
        present = store.online.tables()
    except StorageError as exc:
        return {"error": str(exc), "tables": []}
    tables = []
    for v in versions:
        name = table_name(v.view, v.version)
        if name in present:
            tables.append({"table": name, "version": v.version, "columns": present[name]})
    return {"error": None, "tables": tables}


def view_page(reader: Reader, name: str, as_of: str | None) -> dict[str, Any]:
    """One view: its current version, versions over time with their code, materializations, online tables."""
    registry = reader.registry
    at = reader.moment(as_of)
    info = _find(reader, name, at)
    now = datetime.now(UTC)
    versions = [v for v in registry.versions(info.name) if v.commit_id <= at]
    applies = {v.commit_id: registry.commit(v.commit_id) for v in versions}
    timeline = []
    for v in versions:
        records = _freshness_records(registry, v.id, at)
        for m in registry.materializations(v.id):
            if m.commit_id <= at:
                timeline.append({"version": v.version, **materialization(m, records.get(m.commit_id))})
    timeline.sort(key=lambda m: m["registry_version"])
    return {
        "registry_version": at,
        "as_of": as_of,
        **view_summary(info, Latest.read(registry, at), now),
        "definition": {k: v for k, v in info.version.definition.items() if k != "input_fingerprints"},
        "versions": [
            {
                "version": v.version,
                "code_hash": v.code_hash,
                "fingerprint": v.fingerprint,
                "registry_version": v.commit_id,
                "applied_at": applies[v.commit_id].committed_at.isoformat(),
                "git_commit": applies[v.commit_id].git_commit,
                "location": v.location,
                "source_text": v.source_text,
            }
            for v in versions
        ],
        "materializations_total": len(timeline),
        "materializations": timeline[-TIMELINE:],
        "online": online_tables(reader.store, versions) if kind(info.version) in ("batch", "window") else None,
        **_present("profile", reader.profile(info.version, at)),
    }


def diff_page(reader: Reader, name: str, old: int, new: int, as_of: str | None) -> dict[str, Any]:
    """Two versions of a view: :func:`featurekit.timetravel.diff`, line by line."""
    registry = reader.registry
    at = reader.moment(as_of)
    a, b = registry.version(name, old), registry.version(name, new)
    text = diff(registry, a.view, old, new)
    return {
        "registry_version": at,
        "as_of": as_of,
        "view": a.view,
        "old": old,
        "new": new,
        "versions": [v.version for v in registry.versions(a.view)],
        "diff": text,
        "old_source": a.source_text,
        "new_source": b.source_text,
        **_present("drift", reader.drift(a.view, old, new, at)),
    }


def window_drift_page(reader: Reader, name: str, windows: Windows, as_of: str | None) -> dict[str, Any]:
    """Drift of a view's features between two windows of its data: ``windows`` is (reference, current),
    each [start, end) of event times, read from the view version's data version at the page's moment."""
    at = reader.moment(as_of)
    info = _find(reader, name, at)
    reference, current = windows
    return {
        "registry_version": at,
        "as_of": as_of,
        "view": info.name,
        "version": info.version.version,
        "reference": [reference[0].isoformat(), reference[1].isoformat()],
        "current": [current[0].isoformat(), current[1].isoformat()],
        **_present("drift", reader.window_drift(info.version, windows, at)),
    }


def history_page(reader: Reader, as_of: str | None, page: int) -> dict[str, Any]:
    """Every registry commit (apply, materialize, push), newest first, :data:`HISTORY_PAGE` a page; and the gc runs."""
    at = reader.moment(as_of)
    pages = max(1, -(-at // HISTORY_PAGE))  # registry versions are 1 to the head, without gaps
    if not 1 <= page <= pages:
        raise UnknownNameError(f"history page {page} does not exist; there are pages 1 to {pages}")
    newest = at - (page - 1) * HISTORY_PAGE
    shown = reader.registry.commits(since=max(0, newest - HISTORY_PAGE), until=newest)[::-1]
    until = reader.registry.commit(at).committed_at if at else None
    runs = [g for g in reader.registry.gc_runs() if until is not None and (as_of is None or g.ran_at <= until)]
    return {
        "registry_version": at,
        "as_of": as_of,
        "page": page,
        "pages": pages,
        "total": at,
        "commits": [
            {
                "registry_version": c.id,
                "committed_at": c.committed_at.isoformat(),
                "kind": c.kind,
                "summary": c.summary,
                "git_commit": c.git_commit,
            }
            for c in shown
        ],
        "gc_runs": [{"ran_at": g.ran_at.isoformat(), "policy": g.policy, "removed": g.removed} for g in runs],
    }


def training_set_page(reader: Reader, record_id: int) -> dict[str, Any]:
    """One recorded training set: its file's path, when it was written, and its manifest."""
    record = reader.registry.training_set(record_id)
    return {
        "id": record.id,
        "path": record.path,
        "written_at": record.written_at.isoformat(),
        "registry_version": record.registry_version,
        "manifest": record.manifest,
    }
