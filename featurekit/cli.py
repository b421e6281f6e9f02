"""The ``featurekit`` command: a thin click skin over :class:`featurekit.FeatureStore`.

Each command calls one API method. A :class:`~featurekit.FeaturekitError` becomes one red line on
stderr and exit code 1 (``--debug`` shows the traceback instead).
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from featurekit.errors import FeaturekitError, SchemaError
from featurekit.example import write_example
from featurekit.info import ViewInfo
from featurekit.integrity import verify_store
from featurekit.store import FeatureStore

F = TypeVar("F", bound=Callable[..., Any])


class Context:
    """Options shared by every command."""

    def __init__(self, repo: Path, quiet: bool, debug: bool) -> None:
        self.repo = repo
        self.quiet = quiet
        self.debug = debug

    def store(self) -> FeatureStore:
        return FeatureStore(self.repo, progress=False if self.quiet else "auto")


def reports_errors(command: F) -> F:
    """Turn a library error into one red line and exit code 1."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        ctx = click.get_current_context().find_object(Context)
        try:
            return command(*args, **kwargs)
        except FeaturekitError as exc:
            if ctx is not None and ctx.debug:
                raise
            click.secho(f"error: {exc}", fg="red", err=True)
            sys.exit(1)

    return wrapper  # type: ignore[return-value]


pass_context = click.make_pass_decorator(Context)


@click.group()
@click.option(
    "--repo",
    type=click.Path(path_type=Path, file_okay=False),
    default=".",
    envvar="FEATUREKIT_REPO",
    show_default=True,
    help="The feature repo folder.",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
@click.option("--debug", is_flag=True, help="Show tracebacks of errors.")
@click.version_option(package_name="featurekit")
@click.pass_context
def cli(ctx: click.Context, repo: Path, quiet: bool, debug: bool) -> None:
    """featurekit: features as Python functions, point-in-time correct, one store."""
    ctx.obj = Context(repo, quiet, debug)


@cli.command()
@click.argument("path", type=click.Path(path_type=Path, file_okay=False), required=False)
@pass_context
@reports_errors
def init(ctx: Context, path: Path | None) -> None:
    """Create an example feature repo at PATH (default: --repo)."""
    target = path or ctx.repo
    written = write_example(target)
    for file in written:
        click.echo(f"created {file}")
    if not written:
        click.echo(f"{target} already holds a repo; nothing written")


@cli.command()
@pass_context
@reports_errors
def plan(ctx: Context) -> None:
    """Show what `apply` would change."""
    with ctx.store() as store:
        click.echo(str(store.plan()))


@cli.command()
@pass_context
@reports_errors
def apply(ctx: Context) -> None:
    """Register new versions of changed feature views."""
    with ctx.store() as store:
        click.echo(str(store.apply()))


@cli.command()
@click.option("--start", required=True, help="Window start (ISO-8601; naive = UTC).")
@click.option("--end", required=True, help="Window end, exclusive (ISO-8601; naive = UTC).")
@click.option("--view", "views", multiple=True, help="Only these views (repeatable); default all.")
@click.option("--offline-only", is_flag=True, help="Do not load the online store (backfills).")
@pass_context
@reports_errors
def materialize(ctx: Context, start: str, end: str, views: tuple[str, ...], offline_only: bool) -> None:
    """Compute and commit the views' features for [START, END)."""
    with ctx.store() as store:
        for result in store.materialize(start, end, views=list(views) or None, online=not offline_only):
            click.echo(str(result))


@cli.command("materialize-incremental")
@click.option("--end", default=None, help="Up to this time (default: now).")
@click.option("--view", "views", multiple=True, help="Only these views (repeatable); default all.")
@click.option("--offline-only", is_flag=True, help="Do not load the online store (backfills).")
@pass_context
@reports_errors
def materialize_incremental(ctx: Context, end: str | None, views: tuple[str, ...], offline_only: bool) -> None:
    """Continue each view from its watermark up to END."""
    with ctx.store() as store:
        results = store.materialize_incremental(end, views=list(views) or None, online=not offline_only)
        for result in results:
            click.echo(str(result))
        if not results:
            click.echo("every view is up to date")


def _as_of(value: str | None) -> int | str | None:
    """``--as-of``: a registry version number or an ISO-8601 time."""
    return int(value) if value is not None and value.isdigit() else value


@cli.command("training-set")
@click.argument("spine", type=click.Path(path_type=Path, dir_okay=False))
@click.option("-f", "--feature", "features", multiple=True, help="view:feature, view or view@vN:feature (repeatable).")
@click.option("-o", "--output", type=click.Path(path_type=Path, dir_okay=False), required=True)
@click.option("--timestamp-field", default=None, help="The spine's time column [default: event_timestamp].")
@click.option("--full-names", is_flag=True, default=None, help="Name columns view__feature.")
@click.option("--as-of", default=None, help="Rebuild as of a registry version (number) or a time (ISO-8601).")
@click.option("--known-at", default=None, help="Only feature rows created at or before this time.")
@click.option(
    "--manifest",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Rebuild the training set a manifest describes (JSON, or a Parquet file written by featurekit).",
)
@pass_context
@reports_errors
def training_set(
    ctx: Context,
    spine: Path,
    features: tuple[str, ...],
    output: Path,
    timestamp_field: str | None,
    full_names: bool | None,
    as_of: str | None,
    known_at: str | None,
    manifest: Path | None,
) -> None:
    """Join FEATURES point-in-time correct onto the SPINE Parquet file and write OUTPUT (with its manifest)."""
    if not features and manifest is None:
        raise click.UsageError("pass -f/--feature at least once, or --manifest")
    with ctx.store() as store:
        result = store.training_set(
            spine,
            list(features) or None,
            timestamp_field=timestamp_field,
            full_names=full_names,
            as_of=_as_of(as_of),
            known_at=known_at,
            manifest=manifest,
        )
        result.to_parquet(output)
        click.echo(f"wrote {output} (registry version {result.manifest_model.registry_version})")


@cli.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_context
@reports_errors
def list_views(ctx: Context, as_json: bool) -> None:
    """List the applied feature views."""
    with ctx.store() as store:
        infos = store.list_views()
        if as_json:
            click.echo(
                json.dumps(
                    [
                        {
                            "view": i.name,
                            "version": i.version.version,
                            "features": i.version.features,
                            "watermark": _watermark(i),
                        }
                        for i in infos
                    ]
                )
            )
            return
        if not infos:
            click.echo("no feature views applied; run `featurekit apply`")
        for info in infos:
            watermark = _watermark(info) or "never materialized"
            click.echo(f"{info.name} v{info.version.version}  {', '.join(info.version.features)}  ({watermark})")


@cli.command()
@click.argument("view")
@pass_context
@reports_errors
def show(ctx: Context, view: str) -> None:
    """Show a feature view (VIEW, or VIEW@vN for an old version)."""
    with ctx.store() as store:
        click.echo(store.show(view).describe(code=True))


@cli.command()
@click.argument("view", required=False)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (one object per line).")
@pass_context
@reports_errors
def history(ctx: Context, view: str | None, as_json: bool) -> None:
    """List applies and materializations (of VIEW, or all), oldest first."""
    with ctx.store() as store:
        entries = store.history(view)
        for entry in entries:
            click.echo(json.dumps(entry.to_dict()) if as_json else str(entry))
        if not entries and not as_json:
            click.echo("no history yet; run `featurekit apply`")


def _version_number(text: str) -> int:
    number = text.removeprefix("v")
    if not number.isdigit():
        raise SchemaError(f"version {text!r} must look like v1 or 1")
    return int(number)


@cli.command()
@click.argument("view")
@click.argument("old")
@click.argument("new")
@pass_context
@reports_errors
def diff(ctx: Context, view: str, old: str, new: str) -> None:
    """Show what changed in VIEW between versions OLD and NEW (e.g. v1 v2)."""
    with ctx.store() as store:
        click.echo(store.diff(view, _version_number(old), _version_number(new)))


@cli.command()
@click.option("--keep-days", type=float, default=30, show_default=True, help="Keep time travel into this many days.")
@click.option("--keep-versions", type=int, default=3, show_default=True, help="Keep the newest K versions per view.")
@click.option("--dry-run", is_flag=True, help="Only report what would be removed.")
@pass_context
@reports_errors
def gc(ctx: Context, keep_days: float, keep_versions: int, dry_run: bool) -> None:
    """Remove offline data that no retained version, pin or time-travel window needs."""
    with ctx.store() as store:
        click.echo(str(store.gc(keep_days, keep_versions, dry_run=dry_run)))


def _parse_pairs(pairs: tuple[str, ...], what: str) -> dict[str, str]:
    parsed = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise SchemaError(f"{what} {pair!r} must look like name=value")
        parsed[name] = value
    return parsed


def _typed(value: str) -> Any:
    """A command-line value as JSON when it parses (numbers, true/false, null), else the string."""
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


@cli.command()
@click.argument("keys", nargs=-1, required=True)
@click.option("-f", "--feature", "features", multiple=True, required=True, help="view:feature or view (repeatable).")
@click.option("-r", "--request", "requests", multiple=True, help="Request input name=value (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_context
@reports_errors
def get(
    ctx: Context, keys: tuple[str, ...], features: tuple[str, ...], requests: tuple[str, ...], as_json: bool
) -> None:
    """Look up online features of one entity: KEYS as driver_id=1001 (all parts of the key)."""
    entity = {k: _typed(v) for k, v in _parse_pairs(keys, "key").items()}
    request = {k: _typed(v) for k, v in _parse_pairs(requests, "request input").items()}
    with ctx.store() as store:
        row = store.online_features([entity], list(features), request=request or None).to_dict()
        flat = {name: values[0] for name, values in row.items()}
        if as_json:
            click.echo(json.dumps(flat, default=str))
        else:
            for name, value in flat.items():
                click.echo(f"{name}: {value}")


@cli.command()
@click.option("-f", "--feature", "features", multiple=True, help="Also run the skew check on these (repeatable).")
@click.option("--sample", default=100, show_default=True, help="How many entities the skew check samples.")
@click.option("-r", "--request", "requests", multiple=True, help="Request input name=value (repeatable).")
@click.option("--at", default=None, help="Compare as of this time (default: now).")
@click.option("--seed", default=0, show_default=True)
@pass_context
@reports_errors
def verify(
    ctx: Context, features: tuple[str, ...], sample: int, requests: tuple[str, ...], at: str | None, seed: int
) -> None:
    """Check the store's integrity; with -f also the training/serving skew. Exits 1 on any problem.

    Integrity: the registry opens and is consistent, every recorded data file exists with its
    recorded size, the online tables match the registry. Problems are listed one per line.
    """
    integrity = verify_store(ctx.repo)
    click.echo(str(integrity))
    ok = integrity.ok
    if features:
        request = {k: _typed(v) for k, v in _parse_pairs(requests, "request input").items()}
        with ctx.store() as store:
            report = store.verify(list(features), sample=sample, request=request or None, at=at, seed=seed)
            click.echo(str(report))
            ok = ok and report.ok
    if not ok:
        sys.exit(1)


def _watermark(info: ViewInfo) -> str | None:
    m = info.materialization
    return m.watermark.isoformat() if m is not None and m.watermark is not None else None


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="featurekit")


if __name__ == "__main__":
    main()
