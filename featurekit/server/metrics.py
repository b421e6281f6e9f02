"""Prometheus metrics of the feature server, written in the text exposition format (version 0.0.4).

Each worker process counts in memory (a lock guards the few dict updates of a request). With
several workers, a scrape reaches one of them, so each worker also writes a snapshot of its
counts to ``FEATUREKIT_METRICS_DIR`` (set by ``featurekit serve``) about once a second, and a
scrape sums the snapshots of every worker the server started, its own counted live: counters
of the other workers may lag by up to a second, and they never go backwards. A worker that
exits keeps its last snapshot, so the sums stay monotonic; the folder is emptied when the
server starts.

Metrics:

- ``featurekit_http_requests_total{route,status}`` and
  ``featurekit_http_request_duration_seconds{route,status}`` (histogram): every answered request,
  timed from the route's start (before the token check and the body read) until its response is
  ready (HTTP parsing and sending are uvicorn's, outside it);
- ``featurekit_entities_per_request{route}`` (histogram);
- ``featurekit_online_read_seconds`` (histogram): the online-store read of each lookup request
  (one request for all its views: one round trip on Redis);
- ``featurekit_on_demand_seconds`` (histogram): for lookups with on-demand features, the time the
  on-demand functions took;
- ``featurekit_feature_freshness_seconds{view,source}`` (gauge): seconds since the newest event
  time of the view version, ``source="served"`` among the rows this server has served,
  ``source="committed"`` the end of its newest committed window (materialize or offline push);
- ``featurekit_serving_log_rows_total{outcome}`` (counter) and ``featurekit_serving_log_pending_rows``
  (gauge), with the serving log on (``online.log``): served rows ``logged`` (accepted), ``written``
  (in a file), ``dropped`` (the queue was full) and ``failed`` (a write error), and the rows
  accepted but not yet in a file.
"""

from __future__ import annotations

import json
import math
import os
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

METRICS_DIR_ENV = "FEATUREKIT_METRICS_DIR"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
COUNT_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)
SNAPSHOT_EVERY_S = 1.0

_HELP = {
    "featurekit_http_requests_total": ("counter", "HTTP requests answered, by route and status."),
    "featurekit_http_request_duration_seconds": ("histogram", "Time to answer a request, by route and status."),
    "featurekit_entities_per_request": ("histogram", "Entities asked for per lookup request."),
    "featurekit_online_read_seconds": ("histogram", "Time of a lookup request's online-store read."),
    "featurekit_on_demand_seconds": (
        "histogram",
        "Lookup time outside online-store reads, for lookups with on-demand features.",
    ),
}


class Metrics:
    """The counts of one worker process; thread-safe."""

    def __init__(self, directory: Path | None = None) -> None:
        self._lock = threading.Lock()
        self._counters: dict[str, dict[tuple[str, ...], float]] = {}
        self._histograms: dict[str, dict[tuple[str, ...], list[float]]] = {}  # bucket counts, then sum
        self._labels: dict[str, tuple[str, ...]] = {}
        self._served: dict[str, int] = {}  # view version -> newest event time served (microseconds)
        self._directory = directory
        self._snapshot = None if directory is None else directory / f"worker-{os.getpid()}.json"
        self._stop = threading.Event()
        self._log_counts: Callable[[], dict[str, int] | None] | None = None
        if directory is not None:
            threading.Thread(target=self._write_snapshots, name="featurekit-metrics", daemon=True).start()

    def close(self) -> None:
        """Stop writing snapshots (after a last one)."""
        self._stop.set()
        if self._snapshot is not None:
            self._write_snapshot()

    # -- counting ------------------------------------------------------------------------

    def observe(self, name: str, value: float, labels: tuple[str, ...] = (), names: tuple[str, ...] = ()) -> None:
        buckets = _buckets(name)
        with self._lock:
            series = self._histograms.setdefault(name, {})
            if names:
                self._labels[name] = names
            state = series.get(labels)
            if state is None:
                state = series[labels] = [0.0] * (len(buckets) + 2)
            for index, bound in enumerate(buckets):
                if value <= bound:
                    state[index] += 1
                    break
            else:
                state[len(buckets)] += 1  # +Inf only
            state[-1] += value

    def request(self, route: str, status: int, seconds: float) -> None:
        """One answered request."""
        labels = (route, str(status))
        with self._lock:
            counts = self._counters.setdefault("featurekit_http_requests_total", {})
            counts[labels] = counts.get(labels, 0) + 1
            self._labels["featurekit_http_requests_total"] = ("route", "status")
        self.observe("featurekit_http_request_duration_seconds", seconds, labels, ("route", "status"))

    def served(self, newest: dict[str, int]) -> None:
        """The newest event time (microseconds) of each view version a lookup returned rows of."""
        with self._lock:
            for view, event_us in newest.items():
                if event_us > self._served.get(view, -(2**63)):
                    self._served[view] = event_us

    def watch_serving_log(self, counts: Callable[[], dict[str, int] | None]) -> None:
        """Report the serving log's counters that ``counts`` returns (None: the log is off)."""
        self._log_counts = counts

    # -- exposition ----------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        log = self._log_counts() if self._log_counts is not None else None
        with self._lock:
            return {
                "serving_log": log,
                "counters": {n: [[list(k), v] for k, v in s.items()] for n, s in self._counters.items()},
                "histograms": {n: [[list(k), list(v)] for k, v in s.items()] for n, s in self._histograms.items()},
                "labels": {n: list(v) for n, v in self._labels.items()},
                "served": dict(self._served),
            }

    def _write_snapshot(self) -> None:
        assert self._snapshot is not None
        temporary = self._snapshot.with_suffix(".tmp")
        try:
            temporary.write_text(json.dumps(self.state()))
            os.replace(temporary, self._snapshot)
        except OSError:  # a full disk must not take the worker down; the scrape says what it has
            return

    def _write_snapshots(self) -> None:
        while not self._stop.wait(SNAPSHOT_EVERY_S):
            self._write_snapshot()

    def _states(self) -> list[dict[str, Any]]:
        states = [self.state()]
        if self._directory is None:
            return states
        for path in sorted(self._directory.glob("worker-*.json")):
            if path == self._snapshot:
                continue
            try:
                states.append(json.loads(path.read_text()))
            except (OSError, ValueError):
                continue  # a worker replacing its file at this instant: it is counted next scrape
        return states

    def exposition(self, committed: dict[str, datetime]) -> str:
        """The Prometheus text of every worker's counts, plus freshness gauges at this moment."""
        counters: dict[str, dict[tuple[str, ...], float]] = {}
        histograms: dict[str, dict[tuple[str, ...], list[float]]] = {}
        labels: dict[str, tuple[str, ...]] = {}
        served: dict[str, int] = {}
        logged: dict[str, int] = {}
        states = self._states()
        for state in states:
            labels.update({n: tuple(v) for n, v in state["labels"].items()})
            for name, series in state["counters"].items():
                merged = counters.setdefault(name, {})
                for key, value in series:
                    merged[tuple(key)] = merged.get(tuple(key), 0) + value
            for name, series in state["histograms"].items():
                merged_h = histograms.setdefault(name, {})
                for key, value in series:
                    current = merged_h.get(tuple(key))
                    if current is None:
                        merged_h[tuple(key)] = list(value)
                    else:
                        merged_h[tuple(key)] = [a + b for a, b in zip(current, value, strict=True)]
            for view, event_us in state["served"].items():
                served[view] = max(event_us, served.get(view, event_us))
            for outcome, count in (state.get("serving_log") or {}).items():
                logged[outcome] = logged.get(outcome, 0) + count
        lines: list[str] = []
        for name, series in sorted(counters.items()):
            _header(lines, name)
            for key, value in sorted(series.items()):
                lines.append(f"{name}{_labels(labels.get(name, ()), key)} {_number(value)}")
        for name, series in sorted(histograms.items()):
            _header(lines, name)
            buckets = _buckets(name)
            for key, value in sorted(series.items()):
                names = labels.get(name, ())
                cumulative = 0.0
                for bound, count in zip(buckets, value, strict=False):
                    cumulative += count
                    lines.append(f"{name}_bucket{_labels(names, key, le=_number(bound))} {_number(cumulative)}")
                total = cumulative + value[len(buckets)]
                lines.append(f"{name}_bucket{_labels(names, key, le='+Inf')} {_number(total)}")
                lines.append(f"{name}_sum{_labels(names, key)} {_number(value[-1])}")
                lines.append(f"{name}_count{_labels(names, key)} {_number(total)}")
        now = datetime.now(UTC)
        now_us = (now - datetime(1970, 1, 1, tzinfo=UTC)) // _MICROSECOND
        lines.append(
            "# HELP featurekit_feature_freshness_seconds Seconds since the newest event time of a view version."
        )
        lines.append("# TYPE featurekit_feature_freshness_seconds gauge")
        for view, event_us in sorted(served.items()):
            age = (now_us - event_us) / 1e6
            lines.append(f'featurekit_feature_freshness_seconds{{view="{_escape(view)}",source="served"}} {age!r}')
        for view, end in sorted(committed.items()):
            age = (now - end).total_seconds()
            lines.append(f'featurekit_feature_freshness_seconds{{view="{_escape(view)}",source="committed"}} {age!r}')
        if logged:
            _serving_log_lines(lines, logged)
        lines.append("# HELP featurekit_workers_reporting Worker processes whose counts this scrape sums.")
        lines.append("# TYPE featurekit_workers_reporting gauge")
        lines.append(f"featurekit_workers_reporting {len(states)}")
        return "\n".join(lines) + "\n"


_MICROSECOND = timedelta(microseconds=1)


def _serving_log_lines(lines: list[str], counts: dict[str, int]) -> None:
    lines.append("# HELP featurekit_serving_log_rows_total Served rows by what became of them in the serving log.")
    lines.append("# TYPE featurekit_serving_log_rows_total counter")
    for outcome in ("logged", "written", "dropped", "failed"):
        lines.append(f'featurekit_serving_log_rows_total{{outcome="{outcome}"}} {counts.get(outcome, 0)}')
    lines.append("# HELP featurekit_serving_log_pending_rows Served rows the serving log holds, not yet in a file.")
    lines.append("# TYPE featurekit_serving_log_pending_rows gauge")
    lines.append(f"featurekit_serving_log_pending_rows {counts.get('pending', 0)}")


def _buckets(name: str) -> tuple[float, ...]:
    return COUNT_BUCKETS if name == "featurekit_entities_per_request" else LATENCY_BUCKETS


def _header(lines: list[str], name: str) -> None:
    kind, text = _HELP.get(name, ("untyped", name))
    lines.append(f"# HELP {name} {text}")
    lines.append(f"# TYPE {name} {kind}")


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(names: tuple[str, ...], values: tuple[str, ...], **extra: str) -> str:
    pairs = [f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=False)]
    pairs += [f'{n}="{v}"' for n, v in extra.items()]
    return "{" + ",".join(pairs) + "}" if pairs else ""


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer():
        return str(int(value))
    return repr(float(value))
