"""``featurekit ui``: the web UI on its own port, with the server's start-up checks and auth rules."""

from __future__ import annotations

from pathlib import Path

from featurekit.server import require
from featurekit.server.run import check_auth

DEFAULT_PORT = 6567


def serve_ui(repo: Path, *, host: str | None = None, port: int | None = None, no_auth: bool = False) -> None:
    """Serve the web UI of ``repo`` until interrupted (host defaults to ``serve.host``, 127.0.0.1)."""
    require()
    import uvicorn

    from featurekit.store import FeatureStore
    from featurekit.ui.routes import create_ui

    store = FeatureStore(repo, progress=False)
    try:
        host = host or store.config.serve.host
        tokens = check_auth(store.root, store.config.serve.token_file, host, no_auth)
        app = create_ui(store, tokens=tokens)
        uvicorn.run(app, host=host, port=port or DEFAULT_PORT, log_level="info", server_header=False)
    finally:
        store.close()
