"""The floor of the HTTP benchmark: a bare ASGI app (no framework) doing the same SQLite lookup.

It reads the JSON body, looks the keys up in featurekit's own online table with one query, and
answers the 8 features as JSON columns: no auth, no types, no TTL, no metrics. uvicorn runs it
with the options ``featurekit serve`` uses. ``FLOOR_DB`` names the online database.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from typing import Any

from benchmarks.data import FEATURES

_local = threading.local()
_COLUMNS = ", ".join(FEATURES)


def _db() -> sqlite3.Connection:
    db: sqlite3.Connection | None = getattr(_local, "db", None)
    if db is None:
        db = sqlite3.connect(os.environ["FLOOR_DB"], check_same_thread=False)
        db.execute("PRAGMA mmap_size = 1073741824")
        _local.db = db
    return db


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    if scope["path"] == "/healthz":
        answer = b'{"status":"ok"}'
    else:
        keys = json.loads(body)["entities"]["driver_id"]
        marks = ", ".join("?" * len(keys))
        sql = f"SELECT __fk_key, {_COLUMNS} FROM stats_a__v1 WHERE __fk_key IN ({marks})"
        rows = {row[0]: row[1:] for row in _db().execute(sql, keys).fetchall()}
        columns: dict[str, list[Any]] = {"driver_id": keys}
        for index, name in enumerate(FEATURES):
            columns[name] = [rows[k][index] if k in rows else None for k in keys]
        answer = json.dumps({"features": columns}, separators=(",", ":")).encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": answer})
