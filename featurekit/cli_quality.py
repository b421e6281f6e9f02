"""The quality commands of the ``featurekit`` CLI (checks, profile, drift, consistency).

Each is thin over the store's quality API.

Registered on the :func:`featurekit.cli.cli` group when that module is imported.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from featurekit.cli import Context, _as_of, _time, cli, pass_context, reports_errors
from featurekit.errors import SchemaError


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


@cli.command(short_help="Show a view's check results per data version.")
@click.argument("view")
@click.option("--version", type=int, default=None, help="A registered version [default: the applied one].")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (one object per commit and line).")
@pass_context
@reports_errors
def checks(ctx: Context, view: str, version: int | None, as_json: bool) -> None:
    """Show the check results stored with each materialization and offline push of VIEW, oldest first."""
    with ctx.store() as store:
        found = store.check_results(view, version)
        if not found and not as_json:
            click.echo(f"{view}: no check results stored (no checks declared, or none ran since they were)")
        for commit in found:
            click.echo(json.dumps(commit.to_dict(), sort_keys=True) if as_json else str(commit))


@cli.command(short_help="Profile a view's committed data.")
@click.argument("view")
@click.option("--start", default=None, help="Profile only rows from this event time (ISO-8601; naive = UTC).")
@click.option("--end", default=None, help="... up to this one, exclusive (with --start).")
@click.option("--as-of", default=None, help="As of a registry version (number) or a time (ISO-8601).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_context
@reports_errors
def profile(ctx: Context, view: str, start: str | None, end: str | None, as_of: str | None, as_json: bool) -> None:
    """Statistics of VIEW's (or VIEW@vN's) current data version, or of one window of it."""
    from featurekit.quality.display import profile_text

    if (start is None) != (end is None):
        raise SchemaError("pass --start and --end together (or neither, for the whole data version)")
    window = None if start is None or end is None else (_time(start, "--start"), _time(end, "--end"))
    with ctx.store() as store:
        found = store.profile(view, window=window, as_of=_as_of(as_of))
    click.echo(json.dumps(found.to_dict()) if as_json else profile_text(found))


@cli.command(short_help="Compare served values (the serving log) with the training path.")
@click.option("--log", "log_path", type=click.Path(path_type=Path), help="Log folder [default: online.log.path].")
@click.option("--start", default=None, help="Only rows served at or after this time (ISO-8601).")
@click.option("--end", default=None, help="Only rows served before this time (ISO-8601).")
@click.option("-f", "--feature", "features", multiple=True, help="Only this logged feature, view:feature (repeatable).")
@pass_context
@reports_errors
def consistency(
    ctx: Context, log_path: Path | None, start: str | None, end: str | None, features: tuple[str, ...]
) -> None:
    """Recompute each logged served row through the training path at its lookup instant and report,
    per feature, the match rate, missing and extra values and SMAPE. Exits 1 unless every value matched."""
    window = None
    if start is not None or end is not None:
        window = (
            _time(start, "--start") if start is not None else datetime(1970, 1, 1, tzinfo=UTC),
            _time(end, "--end") if end is not None else datetime.max.replace(tzinfo=UTC),
        )
    with ctx.store() as store:
        report = store.consistency(log_path, window=window, features=list(features) or None)
    click.echo(str(report))
    if not report.ok:
        sys.exit(1)
