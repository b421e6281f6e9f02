"""A drift report as one self-contained HTML page: a table of every feature, a chart per drifted one.

Charts are inline SVG (the reference's and the current side's shares per bin or category, side by
side), so the page needs no script, no stylesheet and no network. Every string that comes from
the user (feature names, category values, sources) is HTML-escaped.
"""

from __future__ import annotations

from html import escape

from featurekit.quality.drift import DriftReport, FeatureDrift

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem;color:#1b1f24}
table{border-collapse:collapse;margin:1rem 0}th,td{padding:.3rem .7rem;border-bottom:1px solid #d0d7de;text-align:left}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.drift{color:#b3261e;font-weight:600}.ok{color:#1a7f37}.muted{color:#57606a}
.legend span{display:inline-block;width:.8rem;height:.8rem;margin:0 .3rem 0 1rem;vertical-align:middle}
"""
_REF, _CUR = "#8c959f", "#0969da"
_WIDTH, _HEIGHT, _MAX_CELLS = 720, 220, 60


def render(report: DriftReport) -> str:
    rows = "\n".join(_row(f) for f in report.features)
    charts = "\n".join(_chart(f) for f in report.drifted)
    drifted = len(report.drifted)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>featurekit drift report</title><style>{_STYLE}</style></head>
<body>
<h1>Drift report</h1>
<p>Current: <strong>{escape(report.current)}</strong><br>Reference: <strong>{escape(report.reference)}</strong></p>
<p>{drifted} of {len(report.features)} features drifted.</p>
<table><thead><tr><th>Feature</th><th>Kind</th><th>Status</th><th>PSI</th><th>Statistics</th>
<th>Values (reference / current)</th></tr></thead>
<tbody>
{rows}
</tbody></table>
{charts}
</body></html>
"""


def _row(f: FeatureDrift) -> str:
    score = "" if f.score is None else f"{f.score:.4f}"
    detail = "; ".join(
        f"{escape(s.name)} {s.value:.4f} ({escape(s.status)}, alarm above {s.alarm_level:.4f})" for s in f.statistics
    )
    if f.message:
        detail = f'{detail} <span class="muted">{escape(f.message)}</span>'
    css = "drift" if f.status == "drift" else ("ok" if f.status == "ok" else "muted")
    return (
        f'<tr><td>{escape(f.feature)}</td><td>{escape(f.kind)}</td><td class="{css}">{escape(f.status)}</td>'
        f'<td class="num">{score}</td><td>{detail}</td>'
        f'<td class="num">{f.reference_count} / {f.current_count}</td></tr>'
    )


def _chart(f: FeatureDrift) -> str:
    cells = list(zip(f.cells, f.reference_cells, f.current_cells, strict=False))
    hidden = max(0, len(cells) - _MAX_CELLS)
    if hidden:  # keep the cells that moved most
        ref_total, cur_total = sum(f.reference_cells) or 1, sum(f.current_cells) or 1
        cells = sorted(cells, key=lambda c: -abs(c[1] / ref_total - c[2] / cur_total))[:_MAX_CELLS]
    ref_total, cur_total = sum(f.reference_cells) or 1, sum(f.current_cells) or 1
    shares = [(label, r / ref_total, c / cur_total) for label, r, c in cells]
    top = max([max(r, c) for _, r, c in shares] + [1e-12])
    slot = _WIDTH / max(len(shares), 1)
    bar = max(slot / 2 - 1, 1)
    bars = []
    for i, (label, r, c) in enumerate(shares):
        x = i * slot
        for offset, share, colour, side in ((0, r, _REF, "reference"), (bar, c, _CUR, "current")):
            h = share / top * (_HEIGHT - 20)
            bars.append(
                f'<rect x="{x + offset:.1f}" y="{_HEIGHT - h:.1f}" width="{bar:.1f}" height="{h:.1f}" fill="{colour}">'
                f"<title>{escape(label)}: {side} {share:.2%}</title></rect>"
            )
    note = f" ({hidden} cells that moved least are not drawn)" if hidden else ""
    alt = f"Shares of {f.feature} per {'bin' if f.kind == 'numeric' else 'category'}, reference against current"
    return (
        f"<h2>{escape(f.feature)}</h2>"
        f'<p class="legend"><span style="background:{_REF}"></span>reference'
        f'<span style="background:{_CUR}"></span>current{escape(note)}</p>'
        f'<svg role="img" aria-label="{escape(alt)}" width="{_WIDTH}" height="{_HEIGHT}" '
        f'viewBox="0 0 {_WIDTH} {_HEIGHT}"><title>{escape(alt)}</title>{"".join(bars)}</svg>'
    )
