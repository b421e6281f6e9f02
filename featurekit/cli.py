"""The ``featurekit`` command: a thin click skin over :class:`featurekit.FeatureStore`.

Each command calls one API method. A :class:`~featurekit.FeaturekitError` becomes one red line on
stderr and exit code 1 (``--debug`` shows the traceback instead), worded for the command line:
options instead of API parameters.

The store and everything that imports DuckDB, Arrow, polars or pandas is imported inside the
commands, so ``featurekit --help`` and ``--version`` start in a fraction of a second.
"""

from __future__ import annotations

import functools
import json
import re
import sys
import warnings
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from featurekit import __version__
from featurekit.errors import ConfigError, FeaturekitError, SchemaError

if TYPE_CHECKING:
    from featurekit.info import ViewInfo
    from featurekit.online.serving import OnlineResponse
    from featurekit.store import FeatureStore

F = TypeVar("F", bound=Callable[..., Any])

CONFIG_FILE = "featurekit.yaml"  # featurekit.config.CONFIG_FILE, without importing pydantic for --help


def is_repo(folder: Path) -> bool:
    """The rule for a feature repo: a folder holding ``featurekit.yaml`` or at least one ``*.py`` module."""
    return folder.is_dir() and ((folder / CONFIG_FILE).is_file() or any(p.is_file() for p in folder.glob("*.py")))


def check_repo(folder: Path) -> None:
    """Fail before anything is opened (or created) when ``folder`` is not a feature repo."""
    if not folder.is_dir():
        raise ConfigError(f"feature repo {folder} is not a folder; run `featurekit init {folder}` first")
    if not is_repo(folder):
        raise ConfigError(
            f"no feature repo in {folder}: it has no {CONFIG_FILE} and no *.py module; "
            f"pass --repo PATH (or set FEATUREKIT_REPO), or run `featurekit init {folder}`"
        )


class Context:
    """Options shared by every command."""

    def __init__(self, repo: Path, quiet: bool, debug: bool) -> None:
        self.repo = repo
        self.quiet = quiet
        self.debug = debug

    def store(self) -> FeatureStore:
        from featurekit.store import FeatureStore

        check_repo(self.repo)
        return FeatureStore(self.repo, progress=False if self.quiet else "auto")


# API parameters named in library messages, respelled as this CLI's options.
_OPTION_NAMES = {"features": "-f", "as_of": "--as-of", "known_at": "--known-at", "timestamp_field": "--timestamp-field"}
_CLI_SPELLING: list[tuple[str, str | Callable[[re.Match[str]], str]]] = [
    (r"\btimestamp_field=", "--timestamp-field"),
    (r"\bfull_names=True\b", "--full-names"),
    (r"\bfeatures=\['view:feature', \.\.\.\]", "-f view:feature"),
    (r"\brequest=\{'([^']+)': \[\.\.\.\]\}", r"-r \1=VALUE"),
    (r"\brequest=\{\.\.\.\}", "-r name=value"),
    (r"\bmanifest= alone: it fixes \[([^\]]*)\]", lambda m: "--manifest alone: it fixes " + _options(m.group(1))),
    (
        r"\bverify needs entities=\.\.\. when the features come from no batch view",
        "verify -f needs at least one feature of a batch view (its entities are sampled)",
    ),
    (r"^start (\S+) must be before end ", r"--start \1 must be before --end "),
    (r"\bpass an end up to now\b", "pass an --end up to now"),
    # "x.py:3: feature view 'v': feature view 'v' (x.py:3) raised ..." -> "x.py:3: feature view 'v' raised ..."
    (r"((?:on-demand|feature) view '[^']+'): \1(?: \([^)]*\))?", r"\1"),
]


def _options(names: str) -> str:
    return ", ".join(_OPTION_NAMES.get(n.strip(" '\""), n.strip()) for n in names.split(","))


def cli_message(text: str) -> str:
    """A library message worded for the command line (``--timestamp-field`` instead of ``timestamp_field=``)."""
    for pattern, replacement in _CLI_SPELLING:
        text = re.sub(pattern, replacement, text)
    return text


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
            click.secho(f"error: {cli_message(str(exc))}", fg="red", err=True)
            sys.exit(1)
        except KeyboardInterrupt as exc:  # Ctrl-C: say what it left behind, exit like a shell does
            if ctx is not None and ctx.debug:
                raise
            click.secho(f"interrupted: {exc or 'stopped before it finished'}", fg="red", err=True)
            sys.exit(130)

    return wrapper  # type: ignore[return-value]


pass_context = click.make_pass_decorator(Context)


def _time(value: str, option: str) -> datetime:
    """An ISO-8601 option value as a UTC datetime; the error names the option."""
    from featurekit.timestamps import utc

    return utc(value, option)


def duration_text(delta: timedelta | float) -> str:
    """A duration as people write it: ``90s``, ``3h``, ``7d``, ``1d 2h``, ``2m 30s``, ``0.5s``."""
    seconds = delta.total_seconds() if isinstance(delta, timedelta) else float(delta)
    if seconds < 120:
        return f"{seconds:g}s"
    whole = round(seconds)
    parts = []
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)):
        count, whole = divmod(whole, size)
        if count:
            parts.append(f"{count}{unit}")
    return " ".join(parts)


def _ttl(ttl_us: int | None) -> str:
    return "none" if ttl_us is None else duration_text(ttl_us / 1_000_000)


def readable_ttls(text: str) -> str:
    """Plan and diff texts name the stored ``ttl_us`` (microseconds); people read ``ttl: 3h -> 1d 2h``."""

    def values(match: re.Match[str]) -> str:
        old, new = (None if v == "None" else int(v) for v in match.groups())
        return f"# ttl: {_ttl(old)} -> {_ttl(new)}"

    text = re.sub(r"(?m)^# ttl_us: (\d+|None) -> (\d+|None)$", values, text)
    return re.sub(r"\bttl_us changed\b", "ttl changed", text)


@click.group()
@click.option(
    "--repo",
    type=click.Path(path_type=Path, file_okay=False),
    default=".",
    envvar="FEATUREKIT_REPO",
    show_default=True,
    help="The feature repo folder (holding featurekit.yaml or *.py modules).",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress bars or spinners.")
@click.option("--debug", is_flag=True, help="Show tracebacks of errors.")
@click.version_option(__version__, prog_name="featurekit")
@click.pass_context
def cli(ctx: click.Context, repo: Path, quiet: bool, debug: bool) -> None:
    """featurekit: features as Python functions, point-in-time correct, one store."""
    ctx.obj = Context(repo, quiet, debug)


@cli.command(short_help="Create an example feature repo.")
@click.argument("path", type=click.Path(path_type=Path, file_okay=False), required=False)
@pass_context
@reports_errors
def init(ctx: Context, path: Path | None) -> None:
    """Create an example feature repo at PATH (default: --repo)."""
    from featurekit.example import EXAMPLE_FILES, example_window, write_example

    target = path or ctx.repo
    if is_repo(target):
        raise ConfigError(f"{target} already holds a feature repo; nothing written (pick a new folder)")
    taken = [name for name in EXAMPLE_FILES if (target / name).exists()]
    if taken:
        raise ConfigError(f"{target} already has {', '.join(taken)}; nothing written (pick a new folder)")
    for file in write_example(target):
        click.echo(f"created {file}")
    start, end = (t.date().isoformat() for t in example_window())
    repo = f"--repo {target} " if target != Path() else ""
    click.echo(
        "\nnext steps:\n"
        f"  featurekit {repo}apply\n"
        f"  featurekit {repo}materialize --start {start} --end {end}\n"
        f"  featurekit {repo}list\n"
        f"  featurekit {repo}get driver_id=1000 -f driver_stats --at {end}"
    )


@cli.command()
@pass_context
@reports_errors
def plan(ctx: Context) -> None:
    """Show what `apply` would change."""
    with ctx.store() as store:
        click.echo(readable_ttls(str(store.plan())))


@cli.command(short_help="Register new versions of changed views.")
@pass_context
@reports_errors
def apply(ctx: Context) -> None:
    """Register new versions of changed feature views."""
    with ctx.store() as store:
        click.echo(readable_ttls(str(store.apply())))


def _priority_options(command: Callable[..., None]) -> Callable[..., None]:
    command = click.option(
        "--cpus",
        default=None,
        metavar="LIST",
        help="Run this process only on these CPUs (Linux affinity, e.g. 1 or 2-3): a feature server on the "
        "other cores keeps its latency, also on kernels that do not preempt a busy job (see --idle).",
    )(command)
    command = click.option(
        "--idle",
        is_flag=True,
        help="Run this process only on cores nothing else wants (Linux SCHED_IDLE): a feature server on "
        "the same host keeps its latency; the job takes as long as before on an otherwise idle host.",
    )(command)
    return click.option(
        "--nice",
        type=click.IntRange(0, 19),
        default=0,
        help="Run this process at this nice value (0-19; default 0: unchanged), a smaller share of the "
        "cores; never raises the priority. --idle gives way more completely.",
    )(command)


def _lower_priority(nice: int, idle: bool, cpus: str | None) -> None:
    """``--nice`` / ``--idle`` / ``--cpus``, before the store opens (see :mod:`featurekit.priority`)."""
    from featurekit.priority import confine_to_cpus, lower_cpu_priority

    if cpus is not None:
        confine_to_cpus(cpus)
    lower_cpu_priority(nice, idle=idle)


@cli.command(short_help="Compute and commit the window [START, END).")
@click.option("--start", required=True, help="Window start (ISO-8601; naive = UTC).")
@click.option("--end", required=True, help="Window end, exclusive (ISO-8601; naive = UTC).")
@click.option("--view", "views", multiple=True, help="Only these views (repeatable); default all.")
@click.option("--offline-only", is_flag=True, help="Do not load the online store (backfills).")
@_priority_options
@pass_context
@reports_errors
def materialize(
    ctx: Context,
    start: str,
    end: str,
    views: tuple[str, ...],
    offline_only: bool,
    nice: int,
    idle: bool,
    cpus: str | None,
) -> None:
    """Compute and commit the views' features for [START, END)."""
    window = _time(start, "--start"), _time(end, "--end")
    _lower_priority(nice, idle, cpus)
    with ctx.store() as store:
        for result in store.materialize(*window, views=list(views) or None, online=not offline_only):
            click.echo(str(result))


@cli.command("materialize-incremental", short_help="Continue each view from its watermark.")
@click.option("--end", default=None, help="Up to this time (ISO-8601; default: now).")
@click.option("--view", "views", multiple=True, help="Only these views (repeatable); default all.")
@click.option("--offline-only", is_flag=True, help="Do not load the online store (backfills).")
@_priority_options
@pass_context
@reports_errors
def materialize_incremental(
    ctx: Context,
    end: str | None,
    views: tuple[str, ...],
    offline_only: bool,
    nice: int,
    idle: bool,
    cpus: str | None,
) -> None:
    """Continue each view from its watermark (the end of its last window) up to END."""
    until = _time(end, "--end") if end is not None else None
    _lower_priority(nice, idle, cpus)
    with ctx.store() as store:
        results = store.materialize_incremental(until, views=list(views) or None, online=not offline_only)
        for result in results:
            if result.source_rows == 0 and result.rows == 0:
                click.echo(f"{result.view} v{result.version}: nothing new since {result.start.isoformat()}")
            else:
                click.echo(str(result))
        if not results:
            click.echo("nothing new: every view is up to date")


def _as_of(value: str | None) -> int | datetime | None:
    """``--as-of``: a registry version number or an ISO-8601 time."""
    if value is None:
        return None
    return int(value) if value.isdigit() else _time(value, "--as-of")


@cli.command("training-set", short_help="Join features onto a spine; write Parquet.")
@click.argument("spine", type=click.Path(path_type=Path, dir_okay=False))
@click.option("-f", "--feature", "features", multiple=True, help="view:feature, view or view@vN:feature (repeatable).")
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="The Parquet file to write (its metadata holds the manifest); optional with --explain.",
)
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
@click.option("--explain", is_flag=True, help="Print per view: what was read, the join, coverage, staleness, leakage.")
@click.option("--json", "as_json", is_flag=True, help="With --explain: print the explanation as JSON.")
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
    explain: bool,
    as_json: bool,
) -> None:
    """Join FEATURES point-in-time correct onto the SPINE Parquet file and write OUTPUT (with its manifest)."""
    if not features and manifest is None:
        raise click.UsageError("pass -f/--feature at least once, or --manifest")
    if as_json and not explain:
        raise click.UsageError("--json prints the explanation: pass --explain too")
    if output is None and not explain:
        raise click.UsageError("pass -o/--output (the Parquet file to write), or --explain")
    from featurekit.progress import spinner

    known = _time(known_at, "--known-at") if known_at is not None else None
    with ctx.store() as store, spinner(f"building the training set from {spine}", False if ctx.quiet else "auto"):
        result = store.training_set(
            spine,
            list(features) or None,
            timestamp_field=timestamp_field,
            full_names=full_names,
            as_of=_as_of(as_of),
            known_at=known,
            manifest=manifest,
        )
        written = result.to_parquet(output) if output is not None else None
        explanation = result.explain() if explain else None
        version = result.manifest_model.registry_version if written is not None else None
    if written is not None:
        import pyarrow.parquet as pq

        rows = pq.ParquetFile(written).metadata.num_rows
        # With --json, stdout holds the JSON alone.
        click.echo(f"wrote {rows:,} rows to {written} (registry version {version})", err=as_json)
    if explanation is not None:
        click.echo(json.dumps(explanation.to_dict()) if as_json else str(explanation))


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
        computed = {"on_demand": "computed on demand", "feature_set": "feature set"}
        for info in infos:
            kind = info.version.definition.get("kind")
            watermark = computed.get(kind) if kind in computed else _watermark(info) or "never materialized"
            click.echo(f"{info.name} v{info.version.version}  {', '.join(info.version.features)}  ({watermark})")


@cli.command(short_help="Show a feature view and its code.")
@click.argument("view")
@pass_context
@reports_errors
def show(ctx: Context, view: str) -> None:
    """Show a feature view and its code (VIEW, or VIEW@vN for an old version)."""
    with ctx.store() as store:
        info = store.show(view)
        text = info.describe(code=True)
        ttl_us = info.version.definition.get("ttl_us")
        if ttl_us is not None:  # describe() writes seconds or days; people read "3h" and "1d 2h"
            text = re.sub(r"(?m)^  ttl: .*$", f"  ttl: {_ttl(ttl_us)}", text, count=1)
        checked = store.check_results(view) if info.metadata.get("checks") else []
        if checked:  # the newest commit's check status, after the declared checks
            last = checked[-1]
            failed = sum(r.passed is False for r in last.results)
            status = "passed" if last.passed else f"FAILED ({failed} of {len(last.results)} checks, committed: warn)"
            text = re.sub(
                r"(?m)^(  checks \(.*)$",
                rf"\1\n  last checks: {status} at data version {last.data_version}",
                text,
                count=1,
            )
        click.echo(text)


@cli.command(short_help="List applies and materializations.")
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


@cli.command(short_help="Show a view's changes between two versions.")
@click.argument("view")
@click.argument("old")
@click.argument("new")
@pass_context
@reports_errors
def diff(ctx: Context, view: str, old: str, new: str) -> None:
    """Show what changed in VIEW between versions OLD and NEW (e.g. v1 v2)."""
    with ctx.store() as store:
        click.echo(readable_ttls(store.diff(view, _version_number(old), _version_number(new))))


@cli.command(short_help="Remove offline data nothing retained needs.")
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


def _requested_views(store: FeatureStore, features: Sequence[str]) -> list[tuple[ViewInfo, list[str]]]:
    """Each requested view (as registered) with the feature names requested of it."""
    from featurekit.references import parse_ref

    found = []
    pending = list(features)
    while pending:
        ref = parse_ref(pending.pop(0))
        info = store.show(ref.view if ref.version is None else f"{ref.view}@v{ref.version}")
        if info.version.definition.get("kind") == "feature_set":  # its requests stand for it
            pending[0:0] = list(info.version.definition["requests"])
            continue
        found.append((info, [ref.feature] if ref.feature else info.version.features))
    return found


def _data_ends(info: ViewInfo, at: datetime) -> str | None:
    """When a batch view's materialized data ends, if that is more than its TTL before ``at``.

    Then every materialized value is null at ``at`` (rows pushed since aside): expired.
    """
    ttl_us = info.version.definition.get("ttl_us")
    m = info.materialization
    if ttl_us is None or m is None or m.watermark is None or m.watermark >= at - timedelta(microseconds=ttl_us):
        return None
    return m.watermark.isoformat(timespec="seconds")


def _null_reason(info: ViewInfo, response: OnlineResponse) -> str:
    """Why this view's value is null for the one entity looked up, from what the online store held."""
    definition = info.version.definition
    if definition.get("kind") == "on_demand":
        return f"computed on demand by {info.name}: null when its inputs are"
    if info.materialization is None:
        return f"{info.name} was never materialized; run `featurekit materialize`"
    view = f"{info.name}@v{info.version.version}"
    status = response.status(view)[0]
    if info.version.is_window:
        return "no events in the window" if status == "found" else f"unknown entity: {info.name} holds no events of it"
    if status == "unknown":
        return f"unknown entity: {info.name} v{info.version.version} holds no row for it"
    if status == "expired":
        expired = response.expired_at(view)[0]
        when = expired.isoformat(timespec="seconds") if expired is not None else "?"
        return f"expired at {when}: its newest row is older than the TTL of {_ttl(definition.get('ttl_us'))}"
    return "stored as null"


@cli.command(short_help="Look up online features of one entity.")
@click.argument("keys", nargs=-1, required=True)
@click.option("-f", "--feature", "features", multiple=True, required=True, help="view:feature or view (repeatable).")
@click.option("-r", "--request", "requests", multiple=True, help="Request input name=value (repeatable).")
@click.option("--at", default=None, help="Look up as of this time, for TTLs (ISO-8601; default: now).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (null for missing values).")
@pass_context
@reports_errors
def get(
    ctx: Context,
    keys: tuple[str, ...],
    features: tuple[str, ...],
    requests: tuple[str, ...],
    at: str | None,
    as_json: bool,
) -> None:
    """Look up online features of one entity: KEYS as driver_id=1001 (all parts of the key).

    A null value says why it may be null: an unknown entity, a value older than the view's TTL at
    the lookup time, or a value stored as null.
    """
    entity = {k: _typed(v) for k, v in _parse_pairs(keys, "key").items()}
    request = {k: _typed(v) for k, v in _parse_pairs(requests, "request input").items()}
    when = _time(at, "--at") if at is not None else datetime.now(UTC)
    with ctx.store() as store:
        response = store.online_features([entity], list(features), request=request or None, at=when)
        row = response.to_dict()
        flat = {name: values[0] for name, values in row.items()}
        if as_json:
            click.echo(json.dumps(flat, default=str))
            return
        nulls = [n for n, v in flat.items() if v is None and n not in entity]
        reasons: dict[str, str] = {}
        for info, names in _requested_views(store, features) if nulls else []:
            for name in names:
                reasons.setdefault(name, _null_reason(info, response))
        for name, value in flat.items():
            if name in nulls:
                click.echo(f"{name}: null  ({reasons.get(name, 'no value')})")
            else:
                click.echo(f"{name}: {value}")


def _nothing_compared(store: FeatureStore, features: list[str], at: datetime) -> str | None:
    """Why a skew check without mismatches compared only nulls, when the registry shows it."""
    expired = []
    for info, _ in _requested_views(store, features):
        if info.version.definition.get("kind") == "on_demand":
            continue  # null exactly when its inputs are
        ends = _data_ends(info, at)
        if ends is None:
            return None  # this view may have compared values
        expired.append(f"{info.name} (data ends {ends}, TTL {_ttl(info.version.definition['ttl_us'])})")
    if not expired:
        return None
    return f"every value is null on both sides at {at.isoformat(timespec='seconds')}: {'; '.join(expired)}; pass --at"


@cli.command(short_help="Check store integrity (and skew with -f).")
@click.option("-f", "--feature", "features", multiple=True, help="Also run the skew check on these (repeatable).")
@click.option("--sample", default=100, show_default=True, help="How many entities the skew check samples.")
@click.option("-r", "--request", "requests", multiple=True, help="Request input name=value (repeatable).")
@click.option("--at", default=None, help="Compare as of this time (ISO-8601; default: now).")
@click.option("--seed", default=0, show_default=True, help="Seed of the entity sample (same seed, same entities).")
@pass_context
@reports_errors
def verify(
    ctx: Context, features: tuple[str, ...], sample: int, requests: tuple[str, ...], at: str | None, seed: int
) -> None:
    """Check the store's integrity; with -f also the training/serving skew. Exits 1 on any problem.

    Integrity: the registry opens and is consistent, every recorded data file exists with its
    recorded size, the online tables match the registry. Problems are listed one per line. The
    skew check fails too when it compared nothing (no entity, or every value null on both sides).
    """
    from featurekit.integrity import verify_store

    check_repo(ctx.repo)
    when = _time(at, "--at") if at is not None else datetime.now(UTC)
    integrity = verify_store(ctx.repo)
    click.echo(str(integrity))
    ok = integrity.ok
    if features:
        request = {k: _typed(v) for k, v in _parse_pairs(requests, "request input").items()}
        from featurekit.skew import NothingComparedWarning

        with ctx.store() as store, warnings.catch_warnings():
            warnings.simplefilter("ignore", NothingComparedWarning)  # said below, in the CLI's words
            report = store.verify(list(features), sample=sample, request=request or None, at=when, seed=seed)
            click.echo(str(report))
            ok = ok and report.ok
            empty = "no entity was sampled" if report.entities == 0 else None
            if empty is None and not report.mismatches and report.compared == 0:
                empty = _nothing_compared(store, list(features), when) or "every value was null on both sides"
            if empty is not None:
                click.secho(f"error: nothing was compared: {empty}", fg="red", err=True)
                ok = False
    if not ok:
        sys.exit(1)


@cli.command(short_help="Serve online features over HTTP.")
@click.option("--host", default=None, help="Address to listen on [default: serve.host, 127.0.0.1].")
@click.option("--port", type=int, default=None, help="Port [default: serve.port, 6566].")
@click.option(
    "--workers", type=click.IntRange(min=1), default=None, help="Worker processes [default: serve.workers, 1]."
)
@click.option("--no-auth", is_flag=True, help="Serve without tokens (only on a loopback host).")
@pass_context
@reports_errors
def serve(ctx: Context, host: str | None, port: int | None, workers: int | None, no_auth: bool) -> None:
    """Serve POST /v1/features, /v1/push, Feast's /get-online-features, /healthz, /readyz, /metrics.

    Refuses to start without a token (FEATUREKIT_TOKEN, or serve.token_file in featurekit.yaml)
    unless --no-auth is given on a loopback host.
    """
    from featurekit.server.run import serve as run_server

    check_repo(ctx.repo)
    run_server(ctx.repo, host=host, port=port, workers=workers, no_auth=no_auth, quiet=ctx.quiet)


@cli.command(short_help="Browse the registry, lineage and freshness in a web browser.")
@click.option("--host", default=None, help="Address to listen on [default: serve.host, 127.0.0.1].")
@click.option("--port", type=int, default=6567, show_default=True, help="Port.")
@click.option("--no-auth", is_flag=True, help="Serve without tokens (only on a loopback host).")
@pass_context
@reports_errors
def ui(ctx: Context, host: str | None, port: int, no_auth: bool) -> None:
    """Serve the read-only web UI (views, lineage, history; ?as_of= on every page; .json twins).

    The same auth rules as `featurekit serve`: a token (FEATUREKIT_TOKEN or serve.token_file)
    unless --no-auth is given on a loopback host. `featurekit serve` also mounts it at /ui.
    """
    from featurekit.ui.run import serve_ui

    check_repo(ctx.repo)
    serve_ui(ctx.repo, host=host, port=port, no_auth=no_auth)


def _watermark(info: ViewInfo) -> str | None:
    m = info.materialization
    return m.watermark.isoformat() if m is not None and m.watermark is not None else None


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="featurekit")


# The quality commands (checks, profile, drift, consistency) live in their own module; importing
# it here registers them on `cli` wherever `cli` is imported from.
from featurekit import cli_quality as _quality_commands  # noqa: E402,F401

if __name__ == "__main__":  # `python -m featurekit.cli`: run the imported module's group, which has every command
    from featurekit.cli import main as imported_main

    imported_main()
