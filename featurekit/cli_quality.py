"""The quality commands of the ``featurekit`` CLI (drift), thin over the store's quality API.

Registered on the :func:`featurekit.cli.cli` group when that module is imported.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from featurekit.cli import Context, _time, cli, pass_context, reports_errors


def _side(spec: str, window: tuple[str, str] | None, option: str) -> Any:
    """A drift side from the command line: ``log`` or ``log:PATH``, a training set's Parquet file, or a view."""
    from featurekit.quality.sides import ServedValues, ViewData, side_of

    start, end = (_time(window[0], option), _time(window[1], option)) if window else (None, None)
    if spec == "log":
        return ServedValues(None, start, end)
    if spec.startswith("log:"):
        return ServedValues(spec[4:], start, end)
    if window is not None:
        return ViewData(spec, start, end)
    return side_of(spec)


@cli.command(short_help="Compare feature distributions (drift) between two sides.")
@click.argument("features", nargs=-1)
@click.option("--reference", required=True, help="view[@vN], a training set's .parquet file, log or log:PATH.")
@click.option("--current", required=True, help="The side compared against the reference (same forms).")
@click.option("--reference-window", nargs=2, default=None, metavar="START END", help="Only rows in [START, END).")
@click.option("--current-window", nargs=2, default=None, metavar="START END", help="Only rows in [START, END).")
@click.option("--fail-on", type=float, default=None, help="Exit 1 when a feature's PSI reaches this score.")
@click.option("--html", "html", type=click.Path(path_type=Path, dir_okay=False), default=None, help="Write a report.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_context
@reports_errors
def drift(
    ctx: Context,
    features: tuple[str, ...],
    reference: str,
    current: str,
    reference_window: tuple[str, str] | None,
    current_window: tuple[str, str] | None,
    fail_on: float | None,
    html: Path | None,
    as_json: bool,
) -> None:
    """Did FEATURES (default: all both sides have) drift from --reference to --current?

    Prints PSI, Jensen-Shannon, Kolmogorov-Smirnov (numerics) or L-infinity (categoricals) and
    the null-rate change per feature, each with its status. With --fail-on, exits 1 when a
    feature's PSI reaches that score above its noise level (for CI and cron).
    """
    ref = _side(reference, reference_window, "--reference-window")
    cur = _side(current, current_window, "--current-window")
    with ctx.store() as store:
        report = store.drift(list(features) or None, reference=ref, current=cur)
    if html is not None:
        report.to_html(html)
    click.echo(json.dumps(report.to_dict(), indent=2) if as_json else str(report))
    if fail_on is not None and report.fails(fail_on):
        sys.exit(1)
