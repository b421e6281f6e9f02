"""``featurekit serve``: check that the server may start, then run it under uvicorn.

The checks come first, in the parent process: a server without a token refuses to start unless
``--no-auth`` was given for a loopback address; the repo's code is imported once, so a definition
error stops the start with its message. One worker serves from this process; several are
uvicorn's worker processes, each building its app with :func:`featurekit.server.app.from_environment`.

Polars gets one thread per server process (``POLARS_MAX_THREADS=1``, unless the environment sets
it): a lookup's frames hold a few rows, and with a pool polars hands even a one-row on-demand
computation to another thread, whose wake-up on a 2-vCPU machine costs more than the work.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from featurekit.errors import ConfigError
from featurekit.server import require
from featurekit.server.auth import TOKEN_ENV, Tokens, is_loopback


def serve(
    repo: Path,
    *,
    host: str | None = None,
    port: int | None = None,
    workers: int | None = None,
    no_auth: bool = False,
    quiet: bool = False,
) -> None:
    """Serve ``repo``'s features over HTTP until interrupted (options default to ``serve:`` in featurekit.yaml)."""
    one_polars_thread()
    require()
    import uvicorn

    from featurekit.server.app import NO_AUTH_ENV, REPO_ENV, create_app
    from featurekit.server.metrics import METRICS_DIR_ENV
    from featurekit.store import FeatureStore

    store = FeatureStore(repo, progress=False)
    try:
        settings = store.config.serve
        host = host or settings.host
        port = port or settings.port
        workers = workers or settings.workers
        tokens = check_auth(store.root, settings.token_file, host, no_auth)
        store.definitions  # noqa: B018  (import the repo's code now: a definition error stops the start)
    except BaseException:
        store.close()
        raise
    options = {
        "host": host,
        "port": port,
        "log_level": "warning" if quiet else "info",
        "access_log": False,  # metrics count every request; an access log line costs more than a lookup
        "server_header": False,
        "date_header": False,
    }
    if workers == 1:
        uvicorn.run(create_app(store, tokens=tokens), **options)  # type: ignore[arg-type]
        return
    store.close()  # each worker opens its own
    with tempfile.TemporaryDirectory(prefix="featurekit-metrics-") as folder:
        os.environ[REPO_ENV] = str(Path(repo).resolve())
        os.environ[NO_AUTH_ENV] = "1" if tokens is None else "0"
        os.environ[METRICS_DIR_ENV] = folder
        uvicorn.run(
            "featurekit.server.app:from_environment",
            factory=True,
            workers=workers,
            **options,  # type: ignore[arg-type]
        )


POLARS_THREADS_ENV = "POLARS_MAX_THREADS"


def one_polars_thread() -> None:
    """Give polars one thread in this server process and its workers, unless the environment chose a number.

    Polars reads the variable when it is first imported, so a process that imported polars before
    keeps its pool (the workers, started fresh, still get one thread).
    """
    os.environ.setdefault(POLARS_THREADS_ENV, "1")


def check_auth(root: Path, token_file: str | None, host: str, no_auth: bool) -> Tokens | None:
    """The tokens to require, or None for ``--no-auth`` (allowed on a loopback host only)."""
    if no_auth:
        if not is_loopback(host):
            raise ConfigError(
                f"--no-auth serves every client without a token, so it is only allowed on a loopback address "
                f"(127.0.0.1, ::1, localhost), not {host}; set {TOKEN_ENV} or serve.token_file instead"
            )
        return None
    tokens = Tokens.load(root, token_file)
    if not tokens:
        raise ConfigError(
            f"the server does not start without a token: set {TOKEN_ENV} (scope read,write) or list tokens in "
            "serve.token_file (lines 'TOKEN read' or 'TOKEN read,write'); for local development on 127.0.0.1 "
            "pass --no-auth"
        )
    return tokens
