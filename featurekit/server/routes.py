"""One function per route; :func:`endpoint` adds the token check, the error bodies and the metrics.

Lookups of up to :data:`INLINE_ENTITIES` entities on a local online store (SQLite, memory) run on
the event loop's thread: they take from tens of microseconds to a millisecond or so, less than
handing them to a thread costs (a lookup is Python work under the GIL, so a thread would not run it
alongside others anyway). Lookups on Redis always run in the thread pool: they wait on the network,
and a Redis that stops answering makes each wait up to its socket timeouts; on the event loop's
thread those waits queued up every other request, ``/healthz`` included. Larger lookups,
readiness and metrics (registry reads) and every push (which runs a feature function, may wait for
a view's writer lock and commit offline) run in Starlette's thread pool, so they never hold up the
event loop for long. The store is thread-safe, so all of them share it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from featurekit.applied import check_applied, feature_set_definition
from featurekit.config import ServeLimits
from featurekit.errors import FeaturekitError, NotAppliedError
from featurekit.online.serving import OnlineResponse
from featurekit.server import bodies, feast, problems, responses
from featurekit.server.auth import Tokens
from featurekit.server.limits import check_entities, parse_object, read_body
from featurekit.server.metrics import CONTENT_TYPE, Metrics
from featurekit.server.openapi import spec
from featurekit.store import FeatureStore
from featurekit.wire import PACKED

INLINE_ENTITIES = 256
JSON = "application/json"


@dataclass
class ServerState:
    """What every request of one worker shares."""

    store: FeatureStore
    tokens: Tokens | None  # None: --no-auth (loopback only)
    limits: ServeLimits
    metrics: Metrics
    keys: bodies.KeyTypes = field(init=False)
    shapes: responses.Shapes = field(init=False)
    inline_entities: int = field(init=False)  # lookups of at most this many entities run on the event loop

    def __post_init__(self) -> None:
        self.keys = bodies.KeyTypes(self.store)
        self.shapes = responses.Shapes(self.store)
        self.inline_entities = 0 if self.store.config.online.type == "redis" else INLINE_ENTITIES


Handler = Callable[[ServerState, Request], Awaitable[Response]]


def endpoint(state: ServerState, route: str, handler: Handler, scope: str | None) -> Callable[[Request], Any]:
    """``handler`` behind the token check (``scope``: the one it needs; None: open), with problem+json
    errors and the request's metrics."""

    async def answer(request: Request) -> Response:
        began = time.perf_counter()
        try:
            if scope is not None and state.tokens is not None:
                granted = state.tokens.scopes(request.headers.get("authorization"))
                if scope not in granted:
                    raise problems.ScopeError(f"this token may not {scope}: {route} needs a token with scope {scope}")
            response = await handler(state, request)
        except FeaturekitError as exc:
            status, body = problems.from_error(exc)
            headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
            response = Response(body, status, headers, media_type=problems.PROBLEM_JSON)
        except Exception as exc:  # noqa: BLE001 (any bug: a 500 with an id, the traceback in the log)
            status, body = problems.from_bug(exc, route)
            response = Response(body, status, media_type=problems.PROBLEM_JSON)
        state.metrics.request(route, response.status_code, time.perf_counter() - began)
        return response

    return answer


def _lookup(state: ServerState, asked: bodies.LookupBody) -> OnlineResponse:
    result = state.store.online_features(
        asked.entities, asked.features, request=asked.request, at=asked.at, full_names=asked.full_names
    )
    state.metrics.observe("featurekit_online_read_seconds", result.timings["online_read_s"])
    if result.timings["on_demand_s"]:
        state.metrics.observe("featurekit_on_demand_seconds", result.timings["on_demand_s"])
    return result


async def _run_lookup(state: ServerState, asked: bodies.LookupBody, route: str) -> OnlineResponse:
    check_entities(asked.count, state.limits)
    state.metrics.observe("featurekit_entities_per_request", asked.count, (route,), ("route",))
    if asked.count <= state.inline_entities:
        result = _lookup(state, asked)
    else:
        result = await run_in_threadpool(_lookup, state, asked)
    state.metrics.served(responses.newest_events(result))
    return result


async def features(state: ServerState, request: Request) -> Response:
    """``POST /v1/features``."""
    body = parse_object(await read_body(request, state.limits))
    asked = bodies.lookup_body(body, state.keys)
    result = await _run_lookup(state, asked, "/v1/features")
    shape = state.shapes.of(asked.features, asked.full_names, result)
    if _accepts_packed(request.headers.get("accept", "")):  # fk.Client's packed floats and integer times
        return Response(responses.lookup_body(result, shape, packed=True), media_type=PACKED)
    return Response(responses.lookup_body(result, shape), media_type=JSON)


def _accepts_packed(accept: str) -> bool:
    """Whether an ``Accept`` header prefers the packed form to JSON (RFC 9110 quality values).

    Each form takes the quality of the most specific range naming it (``type/subtype`` before
    ``type/*`` before ``*/*``; parameters are case-insensitive, a malformed ``q`` counts as 0);
    packed is sent only if its quality is above JSON's, so ``*/*`` and a missing header get JSON.
    """
    accept = accept.lower()  # media types and parameter names are case-insensitive
    if PACKED not in accept:
        return False
    ranges = [_media_range(part) for part in accept.split(",")]
    return _quality(ranges, PACKED) > _quality(ranges, JSON)


def _media_range(text: str) -> tuple[str, float]:
    """A media range of an ``Accept`` header and its quality."""
    kind, *parameters = (part.strip() for part in text.split(";"))
    for parameter in parameters:
        name, _, value = parameter.partition("=")
        if name.strip() == "q":
            try:
                quality = float(value)
            except ValueError:
                return kind, 0.0
            return kind, quality if 0.0 <= quality <= 1.0 else 0.0
    return kind, 1.0


def _quality(ranges: list[tuple[str, float]], media: str) -> float:
    """The quality ``ranges`` give ``media``: that of the most specific range naming it, else 0."""
    family = media.split("/", 1)[0] + "/*"
    found: dict[str, float] = {}
    for kind, quality in ranges:
        if kind in (media, family, "*/*") and kind not in found:
            found[kind] = quality
    for kind in (media, family, "*/*"):
        if kind in found:
            return found[kind]
    return 0.0


async def feast_features(state: ServerState, request: Request) -> Response:
    """``POST /get-online-features`` (Feast's shape)."""
    body = parse_object(await read_body(request, state.limits))
    asked, versions = feast.lookup_body(body, state.keys)
    result = await _run_lookup(state, asked, "/get-online-features")
    shape = state.shapes.of(asked.features, asked.full_names, result)
    return _json(feast.response(result, shape, versions))


async def push(state: ServerState, request: Request) -> Response:
    """``POST /v1/push``: raw source rows through the view's function, online (and offline)."""
    body = bodies.push_body(parse_object(await read_body(request, state.limits)))

    def run() -> Any:
        return state.store.push(body.view, bodies.push_table(state.store, body), to=body.to)

    result = await run_in_threadpool(run)
    return _json(
        {
            "view": result.view,
            "version": result.version,
            "rows": result.rows,
            "online_rows": result.online_rows,
            "data_version": result.data_version,
        }
    )


async def healthz(state: ServerState, request: Request) -> Response:
    """``GET /healthz``: the process answers."""
    return _json({"status": "ok"})


def readiness(store: FeatureStore) -> list[str]:
    """Why the server should not take traffic (empty: ready): registry, online store, applied code."""
    problems_found: list[str] = []
    try:
        active = store.registry.active()
    except FeaturekitError as exc:
        return [f"registry: {exc}"]
    try:
        store.online.tables()
    except FeaturekitError as exc:
        problems_found.append(f"online store: {exc}")
    try:
        definitions = store.definitions
    except FeaturekitError as exc:
        return [*problems_found, f"feature repo: {exc}"]
    for name, applied in active.items():
        if applied.version.definition.get("kind") == "feature_set":
            repo_set = next((s for n, s in definitions.feature_sets.items() if n.lower() == name.lower()), None)
            requests = None if repo_set is None else feature_set_definition(repo_set)["requests"]
            if requests != applied.version.definition.get("requests"):
                problems_found.append(
                    f"feature set '{name}' in the repo differs from its applied version v{applied.version.version}; "
                    "run `featurekit apply`, then restart the server"
                )
            continue
        loaded = definitions.any_view(name)
        if loaded is None:
            problems_found.append(f"feature view '{name}' is applied but this server's repo does not define it")
            continue
        try:
            check_applied(loaded, applied.version)
        except NotAppliedError as exc:
            problems_found.append(f"{exc}; then restart the server")
    return problems_found


async def readyz(state: ServerState, request: Request) -> Response:
    """``GET /readyz``: 200 when the server can serve what is applied, else 503 with the reasons."""
    found = await run_in_threadpool(readiness, state.store)
    if found:
        return _json({"status": "not ready", "problems": found}, 503)
    return _json({"status": "ready"})


async def metrics(state: ServerState, request: Request) -> Response:
    """``GET /metrics``: Prometheus text of every worker."""

    def text() -> str:
        registry = state.store.registry
        committed = {}
        for name, active in registry.active().items():
            if active.version.definition.get("kind") not in ("batch", "window"):
                continue
            span = registry.data_span(active.version.id)
            if span is not None:
                committed[f"{name}@v{active.version.version}"] = span[1]
        return state.metrics.exposition(committed)

    return Response(await run_in_threadpool(text), media_type=CONTENT_TYPE)


async def openapi(state: ServerState, request: Request) -> Response:
    """``GET /openapi.json``."""
    return _json(spec())


def _json(value: Any, status: int = 200) -> Response:
    body = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()
    return Response(body, status, media_type=JSON)


# (path, method, handler, scope needed: None for open routes)
ROUTES: list[tuple[str, str, Handler, str | None]] = [
    ("/v1/features", "POST", features, "read"),
    ("/get-online-features", "POST", feast_features, "read"),
    ("/v1/push", "POST", push, "write"),
    ("/healthz", "GET", healthz, None),
    ("/readyz", "GET", readyz, None),
    ("/metrics", "GET", metrics, "read"),
    ("/openapi.json", "GET", openapi, None),
]
