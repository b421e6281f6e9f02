"""The web UI's Starlette application: one route per page, each with its ``.json`` twin.

Read-only: every route but ``POST /login`` is a GET that reads the registry (in Starlette's
thread pool, so a page never holds up the event loop). With tokens configured, every page
answers 401 without one: a bearer token in the ``Authorization`` header, or the cookie the
sign-in form sets (HttpOnly, SameSite=Strict). Every response forbids scripts, frames and
foreign resources (Content-Security-Policy), so even a string that escaped escaping could not run.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from importlib import resources
from typing import Any
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from featurekit.errors import AuthError, FeaturekitError, SchemaError, UnknownNameError
from featurekit.server import problems
from featurekit.server.auth import Tokens
from featurekit.server.process import settle
from featurekit.store import FeatureStore
from featurekit.ui import data, lineage, pages
from featurekit.ui.html import Links, error_page, login_page

COOKIE = "featurekit_token"
LOGIN_BYTES = 4096
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
        "base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
STATIC = {"style.css": "text/css; charset=utf-8"}

Build = Callable[[data.Reader, Request, str | None], dict[str, Any]]
Render = Callable[[dict[str, Any], Links], str]


def _number(request: Request, name: str, default: int | None = None) -> int:
    value = request.query_params.get(name)
    if value is None and default is not None:
        return default
    if value is None or not value.isdigit():
        raise SchemaError(f"?{name}= must be a positive whole number, got {value!r}")
    return int(value)


def _name(request: Request, key: str) -> str:
    value = str(request.path_params[key])
    return value.removesuffix(".json")


def _views(reader: data.Reader, request: Request, as_of: str | None) -> dict[str, Any]:
    return data.views_page(reader, as_of, request.query_params.get("q"))


def _view(reader: data.Reader, request: Request, as_of: str | None) -> dict[str, Any]:
    return data.view_page(reader, _name(request, "name"), as_of)


def _diff(reader: data.Reader, request: Request, as_of: str | None) -> dict[str, Any]:
    name = _name(request, "name")
    return data.diff_page(reader, name, _number(request, "old"), _number(request, "new"), as_of)


def _instant(request: Request, name: str) -> datetime:
    """An ISO-8601 query parameter as a UTC time (naive: UTC); the error names the parameter."""
    value = request.query_params.get(name)
    try:
        parsed = datetime.fromisoformat(value or "")
    except ValueError:
        raise SchemaError(f"?{name}= must be an ISO-8601 time such as 2026-01-31T00:00, got {value!r}") from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _window_drift(reader: data.Reader, request: Request, as_of: str | None) -> dict[str, Any]:
    windows = []
    for side in ("reference", "current"):
        start, end = _instant(request, f"{side}_start"), _instant(request, f"{side}_end")
        if start >= end:
            raise SchemaError(f"the {side} window must end after it starts: [{start.isoformat()}, {end.isoformat()})")
        windows.append((start, end))
    return data.window_drift_page(reader, _name(request, "name"), (windows[0], windows[1]), as_of)


def _lineage(reader: data.Reader, request: Request, as_of: str | None) -> dict[str, Any]:
    return lineage.lineage_page(reader, as_of)


def _history(reader: data.Reader, request: Request, as_of: str | None) -> dict[str, Any]:
    return data.history_page(reader, as_of, _number(request, "page", 1))


def _training_set(reader: data.Reader, request: Request, as_of: str | None) -> dict[str, Any]:
    ident = _name(request, "ident")
    if not ident.isdigit():
        raise SchemaError(f"training set ids are numbers, got {ident!r}")
    return data.training_set_page(reader, int(ident))


def _authorized(tokens: Tokens | None, request: Request) -> None:
    """Raise :class:`AuthError` unless the request carries a token with scope ``read``."""
    if tokens is None:
        return
    header = request.headers.get("authorization")
    cookie = request.cookies.get(COOKIE)
    if header is None and cookie:
        header = f"Bearer {cookie}"
    if "read" not in tokens.scopes(header):
        raise AuthError("this token may not read")


def _page(reader: data.Reader, tokens: Tokens | None, build: Build, render: Render) -> Callable[..., Awaitable[Any]]:
    async def answer(request: Request) -> Response:
        as_json = request.url.path.endswith(".json")
        as_of = request.query_params.get("as_of") or None
        links = Links(request.scope.get("root_path", "").rstrip("/"), as_of)
        try:
            _authorized(tokens, request)
            found = await run_in_threadpool(build, reader, request, as_of)
        except FeaturekitError as exc:
            status = 404 if isinstance(exc, UnknownNameError) else problems.status_of(exc)  # a page that is not there
            name = problems.public_name(exc)
            body = problems.problem(status, name, str(exc), error=name)
            extra = {"WWW-Authenticate": "Bearer"} if status == 401 else {}
            if as_json:
                return Response(body, status, {**HEADERS, **extra}, media_type=problems.PROBLEM_JSON)
            message = str(exc)
            shown = login_page(message, links) if status == 401 else error_page(status, message, links)
            return Response(shown, status, {**HEADERS, **extra}, media_type="text/html")
        if as_json:
            return Response(json.dumps(found), headers=HEADERS, media_type="application/json")
        return Response(render(found, links), headers=HEADERS, media_type="text/html")

    return answer


def create_ui(store: FeatureStore, *, tokens: Tokens | None) -> Starlette:
    """The UI's routes over ``store``; ``tokens=None`` serves every client (allowed on loopback only,
    which :func:`featurekit.server.run.check_auth` decides)."""

    reader = data.Reader(store)

    def routes(path: str, build: Build, render: Render) -> list[Route]:
        handler = _page(reader, tokens, build, render)
        return [Route(path, handler, methods=["GET"]), Route(path + ".json", handler, methods=["GET"])]

    async def home(request: Request) -> Response:
        return RedirectResponse(request.scope.get("root_path", "").rstrip("/") + "/views", 303, headers=HEADERS)

    async def static(request: Request) -> Response:
        name = str(request.path_params["name"])
        if name not in STATIC:  # only the package's own files, by name: no path reaches the disk
            return Response("no such file", 404, HEADERS, media_type="text/plain")
        text = resources.files("featurekit.ui").joinpath("static", name).read_text()
        return Response(text, headers={**HEADERS, "Cache-Control": "max-age=3600"}, media_type=STATIC[name])

    async def login(request: Request) -> Response:
        prefix = request.scope.get("root_path", "").rstrip("/")
        body = (await request.body())[:LOGIN_BYTES]
        token = (parse_qs(body.decode("utf-8", "replace")).get("token") or [""])[0].strip()
        try:
            if tokens is not None:
                tokens.scopes(f"Bearer {token}")
        except AuthError as exc:
            return Response(login_page(str(exc), Links(prefix)), 401, HEADERS, media_type="text/html")
        response = RedirectResponse(prefix + "/views", 303, headers=HEADERS)
        if tokens is not None:  # without auth there is nothing to remember
            response.set_cookie(COOKIE, token, httponly=True, samesite="strict", path=prefix or "/")
        return response

    async def not_routed(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 404
        message = "no such page" if status == 404 else "this page only answers GET"
        links = Links(request.scope.get("root_path", "").rstrip("/"))
        return Response(error_page(status, message, links), status, HEADERS, media_type="text/html")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        settle(store)  # run when the UI is the top-level app (`featurekit ui`); the server's own does it under /ui
        yield

    return Starlette(
        lifespan=lifespan,
        exception_handlers={404: not_routed, 405: not_routed},
        routes=[
            Route("/", home, methods=["GET"]),
            Route("/static/{name}", static, methods=["GET"]),
            Route("/login", login, methods=["POST"]),
            *routes("/views", _views, pages.views_html),
            *routes("/views/{name}/diff", _diff, pages.diff_html),
            *routes("/views/{name}/drift", _window_drift, pages.window_drift_html),
            Route("/views/{name}", _page(reader, tokens, _view, pages.view_html), methods=["GET"]),
            *routes("/lineage", _lineage, pages.lineage_html),
            *routes("/history", _history, pages.history_html),
            Route("/training-sets/{ident}", _page(reader, tokens, _training_set, pages.training_set_html)),
        ],
    )
