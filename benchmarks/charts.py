"""PNG charts of the results (matplotlib, Agg backend): one per workload, and the scaling chart.

matplotlib is the ``bench`` extra (``pip install -e '.[bench]'``); without it the report is
written without charts and says so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.scaling import Point

CONTENDERS = {"featurekit": "#1f77b4", "floor": "#7f7f7f", "feast": "#d62728"}


def available() -> bool:
    try:
        import matplotlib
    except ImportError:
        return False
    matplotlib.use("Agg")
    return True


def value(entry: dict[str, Any] | None) -> float | None:
    """The plotted number: p50 in ms for latencies, the median in seconds otherwise."""
    if not entry or "error" in entry:
        return None
    return float(entry["p50_ms"]) if "p50_ms" in entry else float(entry["median"])


def workload_chart(title: str, by_scale: dict[str, dict[str, Any]], path: Path) -> None:
    """Grouped bars: one group per scale, one bar per contender (log scale when values span 20x)."""
    import matplotlib.pyplot as plt

    scales = list(by_scale)
    present = [c for c in CONTENDERS if any(value(by_scale[s].get(c)) is not None for s in scales)]
    latency = any("p50_ms" in by_scale[s].get(c, {}) for s in scales for c in present)
    figure, axes = plt.subplots(figsize=(1.6 + 1.9 * len(scales), 3.6))
    width = 0.8 / max(1, len(present))
    values = []
    for index, contender in enumerate(present):
        for position, scale in enumerate(scales):
            number = value(by_scale[scale].get(contender))
            if number is None:
                continue
            values.append(number)
            x = position + (index - (len(present) - 1) / 2) * width
            bar = axes.bar(x, number, width, color=CONTENDERS[contender], label=contender if position == 0 else None)
            axes.bar_label(bar, [f"{number:.3g}"], fontsize=7)
    if values and max(values) / max(min(values), 1e-12) > 20:
        axes.set_yscale("log")
    axes.set_xticks(range(len(scales)), scales)
    axes.set_ylabel("p50 latency (ms)" if latency else "median time (s)")
    axes.set_title(title, fontsize=9)
    handles, labels = axes.get_legend_handles_labels()
    unique = dict(zip(labels, handles, strict=True))
    axes.legend(unique.values(), unique.keys(), fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=90, metadata={"Software": None})
    plt.close(figure)


def scaling_chart(series: dict[str, list[Point]], path: Path) -> None:
    """Best wall time, CPU time and peak RSS against feature rows (log-log), with linear references."""
    import matplotlib.pyplot as plt

    figure, panels = plt.subplots(1, 3, figsize=(14, 4.2))
    measures = [
        ("best wall time of the repetitions (s)", "best_s"),
        ("CPU time, median (s)", "cpu_s"),
        ("peak RSS (MB)", "rss_mb"),
    ]
    for axes, (ylabel, field) in zip(panels, measures, strict=True):
        for label, points in series.items():
            shown = [(p.rows, getattr(p, field)) for p in points if getattr(p, field) is not None]
            if not shown:
                continue
            rows, values = zip(*shown, strict=True)
            style = "-" if label.startswith("featurekit") else "--"
            axes.plot(rows, values, style, marker="o" if "training" in label else "s", label=label)
            if label.startswith("featurekit") and len(rows) > 1 and "RSS" not in ylabel:
                axes.plot(rows, [values[0] * r / rows[0] for r in rows], ":", color="black", linewidth=0.8)
        axes.set_xscale("log")
        axes.set_yscale("log")
        axes.set_xlabel("feature rows")
        axes.set_ylabel(ylabel)
        axes.grid(True, which="both", linewidth=0.3)
    panels[0].plot([], [], ":", color="black", linewidth=0.8, label="linear from the 1M point")
    panels[0].legend(fontsize=7)
    figure.suptitle("Scaling: 1-view training set and offline materialize", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=90, metadata={"Software": None})
    plt.close(figure)


SHAPE_STYLES = {
    "featurekit": ("#1f77b4", "-", "o"),
    "asof": ("#7f7f7f", "--", "s"),
    "asof_match": ("#ff7f0e", "--", "P"),
    "range": ("#bcbd22", "--", "^"),
    "polars": ("#2ca02c", ":", "D"),
    "pandas": ("#9467bd", ":", "v"),
}
SHAPE_LABELS = {
    "asof": "DuckDB floor: ASOF",
    "asof_match": "DuckDB floor: ASOF, tie-break after",
    "range": "DuckDB floor: range join",
}


def shapes_chart(points: dict[str, list[tuple[int, float, bool]]], path: Path) -> None:
    """Training-set time against rows per entity (log-log); a timeout is drawn at the timeout, hollow."""
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7.5, 4.5))
    for contender, series in points.items():
        color, style, marker = SHAPE_STYLES.get(contender, ("black", "-", "o"))
        xs = [p[0] for p in series]
        ys = [p[1] for p in series]
        axes.plot(xs, ys, style, color=color, marker=marker, label=SHAPE_LABELS.get(contender, contender))
        for x, y, timed_out in series:
            if timed_out:
                axes.plot([x], [y], marker=marker, markersize=11, markerfacecolor="white", color=color)
                axes.annotate("timeout", (x, y), textcoords="offset points", xytext=(4, 6), fontsize=7, color=color)
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("feature rows per entity (2M feature rows, 100k spine rows, TTL 7 days)")
    axes.set_ylabel("training set, median time (s)")
    axes.grid(True, which="both", linewidth=0.3)
    axes.legend(fontsize=8)
    axes.set_title("1-view training set over rows per entity", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=90, metadata={"Software": None})
    plt.close(figure)
