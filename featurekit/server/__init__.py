"""The HTTP feature server: a thin Starlette layer over one :class:`~featurekit.FeatureStore` per worker.

``featurekit --repo REPO serve`` runs it under uvicorn (:mod:`featurekit.server.run`). Modules:
``app`` (the Starlette application and its worker factory), ``routes`` (one function per route),
``auth`` (bearer tokens and scopes), ``bodies`` (request bodies into API arguments), ``limits``
(body size and entity count), ``responses`` (typed JSON bodies, see :mod:`featurekit.wire`),
``problems`` (errors as ``application/problem+json``), ``metrics`` (Prometheus text), ``feast``
(Feast's ``/get-online-features``), ``openapi`` (the spec). The web UI (:mod:`featurekit.ui`) is
mounted at ``/ui`` under the same tokens.

Importing this package imports neither Starlette nor uvicorn; :func:`require` says how to install
them when they are missing.
"""

from __future__ import annotations

import importlib.util

from featurekit.errors import ConfigError

INSTALL = "pip install 'featurekit[server]'"


def require() -> None:
    """Fail with the install command when the server's dependencies are missing."""
    missing = [name for name in ("starlette", "uvicorn") if importlib.util.find_spec(name) is None]
    if missing:
        raise ConfigError(f"the feature server needs {' and '.join(missing)}: {INSTALL}")
