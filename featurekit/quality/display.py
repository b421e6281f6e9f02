"""Profiles as text for a terminal: one line per column, then each column's histogram or top values."""

from __future__ import annotations

import itertools

from featurekit.quality.profile import ColumnProfile, Profile

_BAR = 30


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.6g}"


def _bars(labels: list[str], counts: list[int]) -> list[str]:
    widest = max(counts, default=0) or 1
    width = max((len(label) for label in labels), default=0)
    return [
        f"    {label.rjust(width)}  {'#' * round(_BAR * count / widest):<{_BAR}} {count}"
        for label, count in zip(labels, counts, strict=True)
    ]


def _bins(column: ColumnProfile) -> list[str]:
    edges = [_number(e) for e in column.edges]
    if not edges:
        labels = ["all"]
    else:
        labels = [f"< {edges[0]}"] + [f"[{a}, {b})" for a, b in itertools.pairwise(edges)]
        labels.append(f">= {edges[-1]}")
    return _bars(labels, list(column.histogram))


def profile_text(profile: Profile, *, details: bool = True) -> str:
    """A table of every column's statistics, then (``details``) histograms and top values."""
    header = ["column", "kind", "rows", "nulls", "nans", "distinct", "min", "p50", "max", "mean", "std"]
    rows = [header]
    for c in profile.columns.values():
        distinct = "-" if c.distinct is None else str(c.distinct)
        median = _number(c.percentiles.get(50))
        stats = [_number(c.min), median, _number(c.max), _number(c.mean), _number(c.std)]
        rows.append([c.name, c.kind, str(c.rows), str(c.nulls), str(c.nans), distinct, *stats])
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = [f"{profile.source}: {profile.rows} rows"] if profile.source else [f"{profile.rows} rows"]
    lines += ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    if not details:
        return "\n".join(lines)
    for c in profile.columns.values():
        if c.kind == "numeric" and c.count:
            points = ", ".join(f"p{p} {_number(v)}" for p, v in c.percentiles.items())
            lines += ["", f"{c.name}: {points}", *_bins(c)]
        elif c.kind == "categorical" and c.top:
            shown = list(c.top[:10])
            labels = [value for value, _ in shown] + (["(other)"] if c.count > sum(n for _, n in shown) else [])
            counts = [n for _, n in shown] + ([c.count - sum(n for _, n in shown)] if len(labels) > len(shown) else [])
            lines += ["", f"{c.name}: top values", *_bars(labels, counts)]
    return "\n".join(lines)
