"""What one request may send: a body size checked while reading (before any parsing), JSON only, and
a bounded number of entities per lookup."""

from __future__ import annotations

import json
import math
from typing import Any

from starlette.requests import Request

from featurekit.config import ServeLimits
from featurekit.errors import RequestError
from featurekit.server.problems import TooLargeError


async def read_body(request: Request, limits: ServeLimits) -> bytes:
    """The request body, refused as soon as it passes ``max_body_bytes`` (the declared length first)."""
    limit = limits.max_body_bytes
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise RequestError(f"Content-Length {declared[:40]!r} is not a number of bytes")
        if int(declared) > limit:
            raise _too_large(int(declared), limit)
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(size, limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(size: int, limit: int) -> TooLargeError:
    return TooLargeError(
        f"the request body has {size:,} bytes or more, over the server's limit of {limit:,} "
        "(serve.limits.max_body_bytes in featurekit.yaml); send fewer entities or rows per request"
    )


def _no_constants(name: str) -> Any:
    raise RequestError(f"the body holds {name}, which is not JSON; send null for a missing number")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e400: JSON allows it, a float cannot hold it
        raise RequestError(f"the number {text[:40]} in the body is out of the range of a 64-bit float")
    return value


def parse_object(body: bytes) -> dict[str, Any]:
    """A JSON object from the body, or a :class:`RequestError` saying what is wrong with it."""
    if not body:
        raise RequestError("the request has no body; send a JSON object")
    try:
        parsed = json.loads(body, parse_constant=_no_constants, parse_float=_finite)
    except RequestError:
        raise
    except (ValueError, RecursionError) as exc:
        reason = "it nests too deeply" if isinstance(exc, RecursionError) else str(exc)[:200]
        raise RequestError(f"the body is not valid JSON: {reason}") from None
    if not isinstance(parsed, dict):
        raise RequestError(f"the body must be a JSON object, got a JSON {type(parsed).__name__}")
    return parsed


def check_entities(count: int, limits: ServeLimits) -> None:
    """Refuse a lookup of more entities than ``max_entities``."""
    if count > limits.max_entities:
        raise TooLargeError(
            f"the request asks for {count:,} entities, over the server's limit of {limits.max_entities:,} "
            "(serve.limits.max_entities in featurekit.yaml); split it into several requests"
        )
