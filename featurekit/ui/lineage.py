"""Lineage as a graph: source -> view -> on-demand views and feature sets -> training sets.

Read from the applied definitions at one registry version (sources, on-demand inputs, feature
set requests) and from the training sets recorded when they were written to files, each with its
manifest (which names every view version it read). Nodes and edges are JSON-ready dicts;
:func:`lineage_svg` draws them in five columns, each node a link to its page.
"""

from __future__ import annotations

from pathlib import PurePath
from typing import Any

from featurekit.ui.data import Reader, kind
from featurekit.ui.html import Html, Links, esc

COLUMNS = {"source": 0, "batch": 1, "window": 1, "on_demand": 2, "feature_set": 3, "training_set": 4}
NODE_W, NODE_H, GAP_X, GAP_Y = 170, 30, 48, 14
LABEL_CHARS = 24


def _source_label(source: dict[str, Any]) -> str:
    if source.get("path"):
        return str(source["path"])
    return "SQL: " + " ".join(str(source.get("query") or "").split())


def _view_of(request: str) -> str:
    """The view a feature request (``view:feature``, ``view@v2:feature``, ``view``) names."""
    return request.split(":", 1)[0].split("@", 1)[0]


def lineage_page(reader: Reader, as_of: str | None) -> dict[str, Any]:
    """The graph's nodes (each with its kind and label) and edges, as of ``as_of``."""
    registry = reader.registry
    at = reader.moment(as_of)
    nodes: dict[str, dict[str, Any]] = {}
    edges: list[dict[str, str]] = []

    def edge(start: str, end: str) -> None:
        if {"from": start, "to": end} not in edges:
            edges.append({"from": start, "to": end})

    def view_node(name: str, view_kind: str) -> str:
        ident = f"view:{name.lower()}"
        nodes.setdefault(ident, {"id": ident, "kind": view_kind, "label": name, "view": name})
        return ident

    active = reader.active(at)
    for name, applied in active.items():  # first every applied view, with its own kind
        view_node(name, kind(applied.version))
    for name, applied in active.items():
        definition = applied.version.definition
        ident = view_node(name, kind(applied.version))
        if kind(applied.version) in ("batch", "window"):
            label = _source_label(definition.get("source") or {})
            source = f"source:{label}"
            nodes.setdefault(source, {"id": source, "kind": "source", "label": label})
            edge(source, ident)
        elif kind(applied.version) == "on_demand":
            for item in definition.get("inputs") or []:
                edge(view_node(item["view"], "batch"), ident)
        else:
            for request in definition.get("requests") or []:
                edge(view_node(_view_of(request), "batch"), ident)
    for record in registry.training_sets(at) if at else []:
        ident = f"training_set:{record.id}"
        nodes[ident] = {
            "id": ident,
            "kind": "training_set",
            "label": PurePath(record.path).name,
            "training_set": record.id,
            "path": record.path,
        }
        for read in record.manifest.get("views") or []:
            edge(view_node(read["view"], str(read.get("kind") or "batch")), ident)
    ordered = sorted(nodes.values(), key=lambda n: (COLUMNS.get(n["kind"], 1), n["label"].lower()))
    return {"registry_version": at, "as_of": as_of, "nodes": ordered, "edges": edges}


def _short(text: str) -> str:
    return text if len(text) <= LABEL_CHARS else text[: LABEL_CHARS - 1] + "…"


def _node_href(node: dict[str, Any], links: Links) -> str | None:
    if "training_set" in node:
        return links.to(f"training-sets/{node['training_set']}")
    if "view" in node:
        return links.to(f"views/{node['view']}")
    return None


def lineage_svg(graph: dict[str, Any], links: Links) -> Html:
    """The lineage graph in five columns (sources, views, on-demand views, feature sets, training sets)."""
    columns: dict[int, list[dict[str, Any]]] = {}
    for node in graph["nodes"]:
        columns.setdefault(COLUMNS.get(node["kind"], 1), []).append(node)
    place: dict[str, tuple[int, int]] = {}
    for column, members in columns.items():
        for row, node in enumerate(members):
            place[node["id"]] = (column * (NODE_W + GAP_X), row * (NODE_H + GAP_Y))
    width = 5 * NODE_W + 4 * GAP_X
    height = max((len(m) for m in columns.values()), default=1) * (NODE_H + GAP_Y)
    parts = []
    for e in graph["edges"]:
        (x1, y1), (x2, y2) = place[e["from"]], place[e["to"]]
        sx, sy, ex, ey = x1 + NODE_W, y1 + NODE_H // 2, x2, y2 + NODE_H // 2
        middle = (sx + ex) // 2
        parts.append(f'<path class="edge" d="M{sx},{sy} C{middle},{sy} {middle},{ey} {ex},{ey}"/>')
    for node in graph["nodes"]:
        x, y = place[node["id"]]
        label = f"{node['kind'].replace('_', ' ')}: {node['label']}"
        shape = (
            f'<g class="node {esc(node["kind"])}"><title>{esc(label)}</title>'
            f'<rect x="{x}" y="{y}" width="{NODE_W}" height="{NODE_H}" rx="6"/>'
            f'<text x="{x + 8}" y="{y + 20}">{esc(_short(node["label"]))}</text></g>'
        )
        href = _node_href(node, links)
        parts.append(f'<a href="{esc(href)}" aria-label="{esc(label)}">{shape}</a>' if href else shape)
    summary = f"Lineage graph: {len(graph['nodes'])} nodes, {len(graph['edges'])} edges"
    return Html(
        f'<div class="scroll"><svg class="lineage" role="img" aria-label="{esc(summary)}" '
        f'viewBox="-2 -2 {width + 4} {height + 4}" width="{width + 4}" height="{height + 4}">'
        f"<title>{esc(summary)}</title>{''.join(parts)}</svg></div>"
    )
