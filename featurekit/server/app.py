"""The Starlette application of one worker, and the factory uvicorn's worker processes call.

One :class:`~featurekit.FeatureStore` serves every request of a worker (it is thread-safe); the
worker opens it at start-up, loading the repo's code once, and closes it at shutdown.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route

from featurekit.config import ServeLimits
from featurekit.errors import ConfigError
from featurekit.server import problems
from featurekit.server.auth import Tokens
from featurekit.server.metrics import METRICS_DIR_ENV, Metrics
from featurekit.server.process import settle
from featurekit.server.routes import ROUTES, ServerState, endpoint
from featurekit.store import FeatureStore

REPO_ENV = "FEATUREKIT_SERVE_REPO"
NO_AUTH_ENV = "FEATUREKIT_SERVE_NO_AUTH"


def create_app(
    store: FeatureStore,
    *,
    tokens: Tokens | None,
    limits: ServeLimits | None = None,
    metrics: Metrics | None = None,
) -> Starlette:
    """The server's routes over ``store``; ``tokens=None`` serves without authentication.

    Whether serving without tokens is allowed (loopback only) is decided by
    :func:`featurekit.server.run.serve`, which is how the command starts a server.
    """
    counts = metrics or Metrics()
    if store.config.online.log is not None:
        counts.watch_serving_log(lambda: None if store.serving_log is None else store.serving_log.counters().as_dict())
    state = ServerState(store, tokens, limits or store.config.serve.limits, counts)
    routes: list[Route | Mount] = [
        Route(path, endpoint(state, path, handler, scope), methods=[method]) for path, method, handler, scope in ROUTES
    ]
    from featurekit.ui.routes import create_ui

    routes.append(Mount("/ui", app=create_ui(store, tokens=tokens)))  # the web UI, under the same tokens

    async def not_routed(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        detail = "no such route" if status == 404 else "method not allowed" if status == 405 else "bad request"
        headers = dict(exc.headers) if isinstance(exc, HTTPException) and exc.headers else None
        counts.request("other", status, 0.0)
        body = problems.problem(status, detail, f"{request.method} {request.url.path}: {detail}", error="RequestError")
        return Response(body, status, headers, media_type=problems.PROBLEM_JSON)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        settle(store)  # before the first request: see featurekit.server.process
        try:
            yield
        finally:
            counts.close()
            store.close()

    return Starlette(routes=routes, exception_handlers={404: not_routed, 405: not_routed}, lifespan=lifespan)


def from_environment() -> Any:
    """The app of one uvicorn worker process (``featurekit serve --workers N``), configured by the
    environment the command set: the repo, whether auth is off, and the shared metrics folder."""
    repo = os.environ.get(REPO_ENV)
    if not repo:
        raise ConfigError(f"{REPO_ENV} is not set; start the server with `featurekit --repo PATH serve`")
    store = FeatureStore(repo, progress=False)
    store.definitions  # noqa: B018  (import the repo's code before the first request)
    tokens = None if os.environ.get(NO_AUTH_ENV) == "1" else Tokens.load(store.root, store.config.serve.token_file)
    if tokens is not None and not tokens:
        raise ConfigError("no token: set FEATUREKIT_TOKEN or serve.token_file")
    folder = os.environ.get(METRICS_DIR_ENV)
    return create_app(store, tokens=tokens, metrics=Metrics(Path(folder) if folder else None))
