"""HTML building blocks: escaping, links that keep ``?as_of=``, tables and the page layout.

Every value that reaches a page goes through :func:`esc` (``html.escape`` with quotes), whoever
wrote it: view names, docstrings, tags, owners, code, paths, commit summaries. Fragments built
here are :class:`Html` (already safe); anything else is text and gets escaped.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from html import escape
from typing import Any
from urllib.parse import quote, urlencode


class Html(str):
    """A fragment of markup that is already safe (built from escaped parts).

    Adding anything to it escapes that first (unless it is ``Html`` too), so ``Html + Html`` stays
    markup and ``Html + text`` can never smuggle markup in.
    """

    __slots__ = ()

    def __add__(self, other: str) -> Html:
        return Html(str.__add__(self, esc(other)))

    def __radd__(self, other: str) -> Html:
        return Html(str.__add__(esc(other), self))


def esc(value: Any) -> Html:
    """``value`` as safe HTML: fragments stay as they are, everything else is escaped text."""
    if isinstance(value, Html):
        return value
    return Html(escape("" if value is None else str(value), quote=True))


def join(parts: Iterable[Any], separator: str = "") -> Html:
    return Html(separator.join(esc(p) for p in parts))


@dataclass(frozen=True)
class Links:
    """URLs of the UI's pages under its mount point, carrying the registry moment being viewed."""

    prefix: str  # "" for `featurekit ui`, "/ui" under `featurekit serve`
    as_of: str | None = None

    def to(self, path: str, json: bool = False, keep_as_of: bool = True, **query: Any) -> str:
        """The URL of page ``path`` (``"views/driver_stats"``), optionally its JSON twin."""
        url = f"{self.prefix}/{quote(path)}" + (".json" if json else "")
        params = {k: v for k, v in query.items() if v is not None}
        if keep_as_of and self.as_of is not None:
            params.setdefault("as_of", self.as_of)
        return url + ("?" + urlencode(params) if params else "")

    def static(self, name: str) -> str:
        return f"{self.prefix}/static/{quote(name)}"


def link(href: str, text: Any, **attrs: str) -> Html:
    extra = "".join(f' {esc(k.rstrip("_").replace("_", "-"))}="{esc(v)}"' for k, v in attrs.items())
    return Html(f'<a href="{esc(href)}"{extra}>{esc(text)}</a>')


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], caption: str | None = None) -> Html:
    """A table in a horizontally scrolling wrapper (so a narrow screen scrolls the table, not the page)."""
    head = "".join(f'<th scope="col">{esc(h)}</th>' for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in rows)
    cap = f"<caption>{esc(caption)}</caption>" if caption else ""
    return Html(f'<div class="scroll"><table>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>')


def section(title: str, body: Any, anchor: str | None = None, level: int = 2) -> Html:
    ident = f' id="{esc(anchor)}"' if anchor else ""
    return Html(f"<section{ident}><h{level}>{esc(title)}</h{level}>{esc(body)}</section>")


def tags_text(tags: dict[str, Any] | None) -> str:
    return ", ".join(f"{k}={v}" for k, v in (tags or {}).items())


def page(title: str, body: Any, links: Links, json_path: str, **json_query: Any) -> Html:
    """A whole page: the main navigation, the moment shown (``as_of``), the body and a link to its JSON twin."""
    moment = (
        f'<p class="as-of">Showing the registry as of <strong>{esc(links.as_of)}</strong> '
        f"({link(links.to('views', keep_as_of=False), 'back to now')})</p>"
        if links.as_of is not None
        else ""
    )
    nav = join(
        [
            link(links.to("views"), "Views"),
            link(links.to("lineage"), "Lineage"),
            link(links.to("history"), "History"),
            link(links.to(json_path, json=True, **json_query), "JSON", class_="json"),
        ]
    )
    as_of_form = (
        f'<form class="as-of-form" method="get" action="">'
        f'<label for="as_of">As of</label> <input id="as_of" name="as_of" value="{esc(links.as_of or "")}" '
        'placeholder="registry version or ISO time" size="22"> <button type="submit">Go</button></form>'
    )
    return Html(
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)} · featurekit</title>"
        f'<link rel="stylesheet" href="{esc(links.static("style.css"))}"></head><body>'
        '<a class="skip" href="#main">Skip to the content</a>'
        f'<header><span class="brand">featurekit</span><nav aria-label="Main">{nav}</nav>{as_of_form}</header>'
        f'<main id="main">{moment}<h1>{esc(title)}</h1>{esc(body)}</main></body></html>'
    )


def error_page(status: int, message: str, links: Links) -> Html:
    body = Html(f'<p class="error">{esc(message)}</p>')
    return page(f"Error {status}", body, links, "views")


def login_page(message: str, links: Links) -> Html:
    """The 401 page: what is missing, and a form that stores the token in a cookie for this site."""
    body = Html(
        f'<p class="error">{esc(message)}</p>'
        f'<form class="login" method="post" action="{esc(links.prefix)}/login">'
        '<label for="token">Token</label> <input id="token" name="token" type="password" autocomplete="off" '
        'required> <button type="submit">Sign in</button></form>'
    )
    return Html(
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1"><title>Sign in · featurekit</title>'
        f'<link rel="stylesheet" href="{esc(links.static("style.css"))}"></head><body>'
        f'<main id="main"><h1>Sign in</h1>{body}</main></body></html>'
    )
