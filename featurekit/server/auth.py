"""Bearer tokens: where they come from, their scopes, and the constant-time check.

A server is closed by default: it starts only with at least one token, unless it runs with
``--no-auth`` on a loopback address. Tokens come from ``FEATUREKIT_TOKEN`` (scope ``read,write``)
and from ``serve.token_file`` in ``featurekit.yaml``: one token per line, then its scope
(``read`` or ``read,write``); blank lines and ``#`` comments are skipped. Only SHA-256 digests of
the tokens are kept, compared with :func:`hmac.compare_digest` against every known token, so the
time of a check says nothing about how close a guess was. Tokens are never logged or echoed.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from featurekit.errors import AuthError, ConfigError

TOKEN_ENV = "FEATUREKIT_TOKEN"  # noqa: S105 (the variable's name, not a token)
MIN_TOKEN_CHARS = 16
READ = frozenset({"read"})
READ_WRITE = frozenset({"read", "write"})
_SCOPES = {"read": READ, "read,write": READ_WRITE, "write,read": READ_WRITE}


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


@dataclass(frozen=True)
class Tokens:
    """The accepted tokens (as digests) and the scopes of each."""

    entries: tuple[tuple[bytes, frozenset[str]], ...]

    @classmethod
    def load(cls, repo: Path, token_file: str | None, environ: dict[str, str] | None = None) -> Tokens:
        """Tokens from ``FEATUREKIT_TOKEN`` and ``token_file`` (relative to ``repo``)."""
        env = os.environ if environ is None else environ
        entries: list[tuple[bytes, frozenset[str]]] = []
        value = env.get(TOKEN_ENV, "").strip()
        if value:
            _check_strength(value, f"${TOKEN_ENV}")
            entries.append((_digest(value), READ_WRITE))
        if token_file is not None:
            entries.extend(_read_file(repo / token_file))
        return cls(tuple(entries))

    def __bool__(self) -> bool:
        return bool(self.entries)

    def scopes(self, authorization: str | None) -> frozenset[str]:
        """The scopes of the bearer token in an ``Authorization`` header, or :class:`AuthError`."""
        if not authorization:
            raise AuthError("this route needs a token: send the header 'Authorization: Bearer <token>'")
        kind, _, token = authorization.partition(" ")
        if kind.lower() != "bearer" or not token.strip():
            raise AuthError("the Authorization header must be 'Bearer <token>'")
        given = _digest(token.strip())
        found: frozenset[str] = frozenset()
        for digest, scopes in self.entries:  # every entry, match or not: the time is the same
            if hmac.compare_digest(given, digest):
                found = scopes
        if not found:
            raise AuthError("the token is not valid for this server")
        return found


def _check_strength(token: str, where: str) -> None:
    if len(token) < MIN_TOKEN_CHARS or any(c.isspace() for c in token):
        raise ConfigError(
            f"the token in {where} is too weak: use at least {MIN_TOKEN_CHARS} characters without spaces "
            "(e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`)"
        )


def _read_file(path: Path) -> list[tuple[bytes, frozenset[str]]]:
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise ConfigError(f"cannot read serve.token_file {path}: {exc.strerror or exc}") from exc
    entries = []
    for number, line in enumerate(lines, 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        parts = text.split()
        scope = _SCOPES.get(parts[1].replace(" ", "")) if len(parts) == 2 else None
        if scope is None:
            raise ConfigError(
                f"{path}:{number}: write a token and its scope, 'TOKEN read' or 'TOKEN read,write' "
                "(the token itself is not shown here)"
            )
        _check_strength(parts[0], f"{path}:{number}")
        entries.append((_digest(parts[0]), scope))
    return entries


def is_loopback(host: str) -> bool:
    """Whether ``host`` only listens on this machine (``localhost``, 127.0.0.0/8, ``::1``)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
