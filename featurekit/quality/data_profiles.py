"""Profiles of committed data: a data version's from the records of its commits, a window's by a read.

A data version holds the rows of its commits that later ones did not replace: a materialization
of ``[start, end)`` replaces every committed row in that window (whoever wrote it), a push adds
rows. Following the commits in order, each commit's rows are live where no later
materialization's window covered them. The data version's profile is then

* the merge of the stored states of the commits whose rows are all live (no read), and
* for the commits that lost only part of their rows (a re-materialized window inside an earlier,
  longer one) or have no stored state (committed before profiles existed): a profile of the
  committed rows in what is left of their windows, read through the engine. Other live commits
  whose windows overlap that read (pushes) are read with it instead of merged, so no row counts
  twice.

Merging hundreds of commits' states on each read would be slow (a few milliseconds each for
high-cardinality columns), so every :data:`CHECKPOINT_EVERY`-th commit whose data version is all
whole stored states also stores their merge (kind :data:`CHECKPOINT`, with the ids of the commits
it merged): a profile then starts from the newest checkpoint whose commits are the first of the
ones it merges and merges fewer than :data:`CHECKPOINT_EVERY` more, in the same order, so the
result is the same to the bit.
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from featurekit.errors import RetentionError
from featurekit.offline.engine import OfflineEngine
from featurekit.offline.inputs import view_input
from featurekit.offline.tables import OfflineTables
from featurekit.quality.profile import Profile
from featurekit.quality.profiling import Edges, ProfileState, choose_edges, feature_columns, version_edges
from featurekit.registry import Materialization, Registry, ViewVersion

Interval = tuple[datetime, datetime]
READ_ROWS = 1_000_000
PROFILE = "profile"  # the quality-record kind of one commit's profile state
CHECKPOINT = "data_profile"  # the kind of a data version's merged state, stored with its commit
CHECKPOINT_EVERY = 8


def subtract(intervals: list[Interval], cut: Interval) -> list[Interval]:
    """``intervals`` less ``cut`` (half-open intervals)."""
    kept = []
    for start, end in intervals:
        if end <= cut[0] or cut[1] <= start:
            kept.append((start, end))
            continue
        if start < cut[0]:
            kept.append((start, cut[0]))
        if cut[1] < end:
            kept.append((cut[1], end))
    return kept


def _overlaps(a: Iterable[Interval], b: Iterable[Interval]) -> bool:
    b = list(b)
    return any(s < e2 and s2 < e for s, e in a for s2, e2 in b)


@dataclass
class Segment:
    """One commit's rows still in the data version: where they can be, and whether all are."""

    commit: Materialization
    live: list[Interval]
    whole: bool = True


def live_segments(commits: list[Materialization], removed: dict[int, datetime]) -> list[Segment]:
    """The commits whose rows the last one's data version holds (``removed``: when gc removed data versions).

    A materialization whose base data version gc had removed rewrote the whole table (its rows
    then being the only ones). The live intervals of materializations never overlap (each one's
    window was cut out of all before it), so they are kept sorted and a new window finds the few
    it cuts by bisection: hundreds of commits cost a millisecond, not a pass over all per commit.
    """
    segments: dict[int, Segment] = {}  # by position in ``commits``, in commit order
    starts: list[datetime] = []  # the materializations' live intervals, sorted: their starts ...
    pieces: list[tuple[datetime, int]] = []  # ... and their ends and segments
    pushes: list[int] = []
    previous: Materialization | None = None
    for number, commit in enumerate(commits):
        window = (commit.window_start, commit.window_end)
        gone = removed.get(previous.data_version) if previous is not None else None
        previous = commit
        if commit.mode == "push":
            segments[number] = Segment(commit, [window])
            pushes.append(number)
            continue
        if gone is not None and gone <= commit.committed_at:
            segments, starts, pieces, pushes = {}, [], [], []
        first = bisect.bisect_right(starts, window[0])
        if first and pieces[first - 1][0] > window[0]:
            first -= 1  # the interval that holds the window's start
        last = first
        while last < len(starts) and starts[last] < window[1]:
            last += 1
        kept_starts: list[datetime] = []
        kept_pieces: list[tuple[datetime, int]] = []
        for start, (end, owner) in zip(starts[first:last], pieces[first:last], strict=True):
            if start < window[0]:
                kept_starts.append(start)
                kept_pieces.append((window[0], owner))
            if window[1] < end:
                kept_starts.append(window[1])
                kept_pieces.append((end, owner))
        cut = {owner for _, owner in pieces[first:last]} | set(pushes)
        for owner in cut:
            segment = segments[owner]
            kept = subtract(segment.live, window)
            if kept != segment.live:
                segment.live, segment.whole = kept, False
            if not kept:
                del segments[owner]
        pushes = [p for p in pushes if p in segments]
        middle = sum(1 for s in kept_starts if s < window[0])  # the piece left of the window, if any
        kept_starts[middle:middle] = [window[0]]
        kept_pieces[middle:middle] = [(window[1], number)]
        starts[first:last], pieces[first:last] = kept_starts, kept_pieces
        segments[number] = Segment(commit, [window])
    return list(segments.values())


def _removed(registry: Registry, version: ViewVersion) -> dict[int, datetime]:
    """When gc removed each of the version's removed data versions."""
    removed = {}
    for data_version in sorted(dv for vid, dv in registry.removals() if vid == version.id):
        removal = registry.removal(version.id, data_version)
        if removal is not None:
            removed[data_version] = removal.removed_at
    return removed


def _plan(segments: list[Segment], stored: set[int]) -> tuple[list[Segment], list[Interval]]:
    """Which segments' stored states are merged (in order) and which intervals are read (see the
    module docstring; ``stored``: the commits with a stored state)."""
    to_read = [s for s in segments if not s.whole or s.commit.commit_id not in stored]
    read = [interval for s in to_read for interval in s.live]
    merged = [s for s in segments if s not in to_read]
    while True:  # a merged commit overlapping the read is read instead (its rows are in the read)
        overlapping = [s for s in merged if _overlaps(s.live, read)]
        if not overlapping:
            break
        merged = [s for s in merged if s not in overlapping]
        read += [interval for s in overlapping for interval in s.live]
    return merged, read


@dataclass
class _Merge:
    """Which stored states a data version's profile merges: after ``start`` (the checkpoint that
    merged the first of them, if one did), ``rest``, in order; and the intervals to read."""

    start: dict[str, Any] | None
    rest: list[Segment]
    merged: list[Segment]
    read: list[Interval]
    stored: dict[int, str]

    def state(self, version: ViewVersion) -> ProfileState:
        state = ProfileState.empty(version.schema, feature_columns(version))
        if self.start is not None:
            state = ProfileState.from_dict(self.start)
        for segment in self.rest:
            state = state.merge(ProfileState.from_json(self.stored[segment.commit.commit_id]))
        return state


def _merge_stored(registry: Registry, version: ViewVersion, segments: list[Segment], as_of: int | None) -> _Merge:
    """The stored states :func:`_plan` picks, from the newest checkpoint that merged the first of them."""
    newest = max((s.commit.commit_id for s in segments), default=0)
    found = registry.latest_quality(CHECKPOINT, newest, version.id).get(version.id) if segments else None
    data = None if found is None else json.loads(found[1])
    chain = [] if found is None or data is None else [*data["commits"], found[0]]
    older = [s.commit.commit_id for s in segments if s.whole and found is not None and s.commit.commit_id < found[0]]
    if any(c not in chain for c in older):
        found, data, chain = None, None, []  # an older commit it did not merge may be merged now
    stored = dict(registry.quality(version.id, PROFILE, as_of, since=None if found is None else found[0]))
    merged, read = _plan(segments, {*stored, *chain})  # a checkpoint's commits all have stored states
    if data is not None and [s.commit.commit_id for s in merged[: len(chain)]] == chain:
        return _Merge(data, merged[len(chain) :], merged, read, stored)
    if found is not None:  # the checkpoint merged rows that are gone or read now: merge them all
        stored = dict(registry.quality(version.id, PROFILE, as_of))
    return _Merge(None, merged, merged, read, stored)


def data_version_profile(
    registry: Registry,
    tables: OfflineTables,
    engine: OfflineEngine,
    version: ViewVersion,
    *,
    as_of: int | None = None,
    edges: Edges | None = None,
) -> Profile:
    """The profile of the version's current data version (as of registry version ``as_of``).

    ``edges``: histogram edges to use instead of the version's (per column: the others keep the
    version's); each must be a bucket boundary
    (:func:`~featurekit.quality.sketches.on_bucket_grid`), as every view version's are, so the
    histograms are read off the merged buckets, exactly.
    """
    commits = [m for m in registry.materializations(version.id) if as_of is None or m.commit_id <= as_of]
    columns = feature_columns(version)
    if not commits:
        empty = ProfileState.empty(version.schema, columns)
        return empty.profile(edges or {}, f"{version.view} v{version.version}: nothing materialized")
    last = commits[-1]
    if registry.removal(version.id, last.data_version) is not None:
        raise RetentionError(
            f"data version {last.data_version} of feature view '{version.view}' v{version.version} was removed "
            "by gc; its profile stays in the registry, but profiles are read for data that exists: "
            "pass a later as_of"
        )
    segments = live_segments(commits, _removed(registry, version))
    plan = _merge_stored(registry, version, segments, as_of)
    state = plan.state(version)
    if plan.read:
        files = tables.files(version.view, version.version, last.data_version)
        for batch in engine.committed_rows(view_input(version, files), plan.read, columns, READ_ROWS):
            state.add(batch)
    fixed = version_edges(registry, version)
    if edges is not None:  # the columns they leave out keep the version's
        edges = {**(fixed or {}), **edges}
    elif fixed is not None:
        edges = fixed
    source = f"{version.view} v{version.version} data version {last.data_version}"
    return state.profile(edges if edges is not None else choose_edges(state), source)


def checkpoint_records(
    registry: Registry, version: ViewVersion, window: Interval, mode: str, own: ProfileState
) -> dict[str, str]:
    """The :data:`CHECKPOINT` record of a commit about to be made (``own``: its rows' state), or nothing.

    Due when the new data version's profile would merge at least :data:`CHECKPOINT_EVERY`
    stored states after the newest checkpoint (this commit's own among them).
    """
    commits = registry.materializations(version.id)
    if len(commits) + 1 < CHECKPOINT_EVERY:
        return {}
    pending = Materialization(
        commits[-1].commit_id + 1, datetime.now(UTC), version.id, -1, window[0], window[1], None, own.rows, mode
    )  # fmt: skip
    kept = live_segments([*commits, pending], _removed(registry, version))[:-1]
    plan = _merge_stored(registry, version, kept, None)
    if len(plan.rest) + 1 < CHECKPOINT_EVERY or _overlaps([window], plan.read):  # not due, or its rows are read
        return {}
    merged = plan.state(version).merge(own)
    return {CHECKPOINT: merged.to_json(commits=[s.commit.commit_id for s in plan.merged])}


def window_profile(
    registry: Registry,
    tables: OfflineTables,
    engine: OfflineEngine,
    version: ViewVersion,
    window: Interval | None,
    *,
    as_of: int | None = None,
    edges: Edges | None = None,
) -> Profile:
    """The profile of the committed rows with event times in ``window`` (None: all), read through the engine.

    ``edges``: histogram edges to use instead of the version's (drift profiles one side on the
    other side's bins).
    """
    last = registry.last_materialization(version.id, as_of)
    columns = feature_columns(version)
    state = ProfileState.empty(version.schema, columns)
    data_version = None if last is None else last.data_version
    if last is not None:
        if registry.removal(version.id, last.data_version) is not None:
            raise RetentionError(
                f"data version {last.data_version} of feature view '{version.view}' v{version.version} was "
                "removed by gc; pass a later as_of"
            )
        if window is None:
            files = tables.files(version.view, version.version, last.data_version)
        else:  # only the files whose recorded event times reach into the window
            time_field = version.definition["source"]["timestamp_field"]
            files = tables.files_within(version.view, version.version, last.data_version, time_field, [window])
        if files:  # a window no file reaches into has no rows
            for batch in engine.committed_rows(
                view_input(version, files), None if window is None else [window], columns, READ_ROWS
            ):
                state.add(batch)
    if edges is None:
        edges = version_edges(registry, version)
    span = "" if window is None else f"[{window[0].isoformat()}, {window[1].isoformat()})"
    source = f"{version.view} v{version.version} data version {data_version} {span}".rstrip()
    return state.profile(edges if edges is not None else choose_edges(state), source)


def resolve_version(registry: Registry, view: str, at: int) -> ViewVersion:
    """``"name"`` (the version active at registry version ``at``) or ``"name@vN"``."""
    from featurekit.errors import UnknownNameError, did_you_mean

    name, _, pinned = view.partition("@v")
    if pinned:
        if not pinned.isdigit():
            raise UnknownNameError(f"cannot read {view!r}; write VIEW or VIEW@vN")
        return registry.version(name, int(pinned))
    active = registry.active(at)
    found = next((a.version for n, a in active.items() if n.lower() == name.lower()), None)
    if found is None:
        raise UnknownNameError(f"no applied feature view {name!r}{did_you_mean(name, active)}")
    return found
