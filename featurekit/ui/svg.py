"""Charts drawn on the server as inline SVG: no script, no network, readable by screen readers.

Each chart carries an ``aria-label`` and a ``<title>`` saying what it shows, and its data is
also on the page as a table. Tooltips are escaped like every other text. (The lineage graph is
drawn in :mod:`featurekit.ui.lineage`.)
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from featurekit.ui.html import Html, esc


def timeline_svg(materializations: list[dict[str, Any]]) -> Html:
    """Each materialization as a bar over its event-time window, one lane per view version; height ~ rows."""
    if not materializations:
        return Html("")
    starts = [datetime.fromisoformat(m["window_start"]).timestamp() for m in materializations]
    ends = [datetime.fromisoformat(m["window_end"]).timestamp() for m in materializations]
    low, high = min(starts), max(ends)
    span = max(high - low, 1.0)
    lanes = sorted({m["version"] for m in materializations})
    most = max(1, *(m["rows"] for m in materializations))
    width, lane_h = 720, 40
    parts = []
    for m, start, end in zip(materializations, starts, ends, strict=True):
        lane = lanes.index(m["version"])
        x = 40 + (start - low) / span * (width - 50)
        w = max((end - start) / span * (width - 50), 1.5)
        h = max(round(m["rows"] / most * (lane_h - 8)), 2)
        y = lane * lane_h + (lane_h - h)
        tip = (
            f"v{m['version']} {m['mode']} [{m['window_start']}, {m['window_end']}): {m['rows']} rows, "
            f"data version {m['data_version']}, registry version {m['registry_version']}"
        )
        parts.append(
            f'<rect class="bar {esc(m["mode"])}" x="{x:.1f}" y="{y}" width="{w:.1f}" height="{h}">'
            f"<title>{esc(tip)}</title></rect>"
        )
    for lane, version in enumerate(lanes):
        parts.append(f'<text x="0" y="{lane * lane_h + lane_h - 4}">v{version}</text>')
    height = len(lanes) * lane_h + 4
    summary = (
        f"Timeline of {len(materializations)} materializations over event time, "
        f"{datetime.fromtimestamp(low, UTC).date()} to {datetime.fromtimestamp(high, UTC).date()}"
    )
    return Html(
        f'<svg class="timeline" role="img" aria-label="{esc(summary)}" viewBox="0 0 {width} {height}" '
        f'preserveAspectRatio="none"><title>{esc(summary)}</title>{"".join(parts)}</svg>'
    )


def histogram_svg(name: str, counts: list[int]) -> Html:
    """A histogram's bins as bars (the profile's fixed edges are in the table beside it)."""
    if not counts:
        return Html("")
    most = max(1, *counts)
    width, height = 200, 50
    bar = width / len(counts)
    bars = "".join(
        f'<rect class="bin" x="{i * bar:.1f}" y="{height - c / most * height:.1f}" '
        f'width="{max(bar - 1, 0.5):.1f}" height="{c / most * height:.1f}"/>'
        for i, c in enumerate(counts)
    )
    label = f"Histogram of {name}: {len(counts)} bins"
    return Html(
        f'<svg class="histogram" role="img" aria-label="{esc(label)}" viewBox="0 0 {width} {height}">'
        f"<title>{esc(label)}</title>{bars}</svg>"
    )
