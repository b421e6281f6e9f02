"""``python -m benchmarks run --scale medium``: featurekit vs the hand-written floor vs Feast, in one run.

Subcommands: ``run`` (one scale, see :mod:`benchmarks.runner`), ``scaling`` (the scaling workloads at
1M, 10M and 30M feature rows), ``shapes`` (the training set on long entity histories, see
:mod:`benchmarks.shapes`), ``windows`` (window aggregations against hand-written floors, see
:mod:`benchmarks.windows`), ``report`` (rewrite RESULTS.md and the charts from the JSON records);
``redis`` (the Redis online store against hand-written redis-py, see :mod:`benchmarks.redis_online`);
``http`` (the feature server, see :mod:`benchmarks.http_server`); ``servelog`` (1-entity lookups
with the serving log off and on, see :mod:`benchmarks.servelog`); ``load`` (the server under a
bounded load, idle, during a materialize and through a Redis restart, see :mod:`benchmarks.serving_load`);
``quality`` (offline materialize with and without the quality pass, see :mod:`benchmarks.quality`);
``drift`` (a drift report between two 10M-row view versions, see :mod:`benchmarks.drift`);
``ui`` (every web UI page on 500 views and 10,000 registry commits, see :mod:`benchmarks.ui_pages`);
``child``, ``redis-child``, ``servelog-child``, ``quality-child``, ``drift-child`` and ``materialize-loop`` are the
harness's own child processes.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from benchmarks.data import SCALES, SCALING, ensure, peak_rss_mb
from benchmarks.runner import HERE, run_all
from benchmarks.workloads import CALLS

SCALING_WORKLOADS = "training_1view_arrow,materialize_offline"


def child(argv: list[str]) -> None:
    """Run one contender's workload and write its JSON result (called in a fresh process)."""
    if argv[:1] == ["shape"]:
        from benchmarks.shapes import child as shape_child

        shape_child(argv[1:])
        return
    if argv[:1] == ["window"]:
        from benchmarks.windows import child as window_child

        window_child(argv[1:])
        return
    from benchmarks import contenders as c

    kind, scale_name, out, *args = argv
    scale = SCALES[scale_name]
    folder = ensure(scale)
    work = Path(out).parent
    output = work / f"{kind}.parquet"
    result: dict[str, Any]
    if kind == "training":
        result = c.fk_training(folder, int(args[0]), args[1], output)
    elif kind == "floor_training":
        result = c.floor_training(folder, int(args[0]), args[1], output)
    elif kind == "materialize":
        result = c.fk_materialize(folder, online=args[0] == "online")
    elif kind == "floor_materialize_offline":
        result = c.floor_materialize_offline(folder, work)
    elif kind == "floor_materialize_full":
        result = c.floor_materialize_full(folder, work)
    elif kind == "online_load":
        result = c.fk_online_load(folder)
    elif kind == "floor_online_load":
        result = c.floor_online_load(folder, work)
    elif kind in ("incremental", "floor_incremental"):
        from benchmarks.incremental import fk_incremental, floor_incremental

        result = fk_incremental(folder, work) if kind == "incremental" else floor_incremental(folder, work)
    elif kind == "apply_many":
        from benchmarks.apply_many import fk_apply_many

        result = fk_apply_many(folder, work, int(args[0]))
    elif kind == "lookup":
        result = c.fk_lookup(folder, scale.entities, int(args[0]), args[1] == "1", CALLS[args[0]])
    elif kind == "floor_lookup":
        result = c.floor_lookup(folder, scale.entities, int(args[0]), CALLS[args[0]])
    elif kind == "lookup_during_materialize":
        result = c.lookups_during_materialize(folder, scale.entities, 20.0)
    else:
        raise SystemExit(f"unknown workload {kind}")
    result["output"] = str(output) if output.exists() else None
    result["rss_mb"] = peak_rss_mb()
    Path(out).write_text(json.dumps(result))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the benchmarks of one scale and write the results")
    run.add_argument("--scale", choices=sorted(SCALES), default="medium")
    run.add_argument("--only", default="", help="comma-separated workloads (default: all)")
    scaling = sub.add_parser("scaling", help=f"run {SCALING_WORKLOADS} at {', '.join(SCALING)} (no Feast)")
    for command in (run, scaling):
        command.add_argument("--repeat", type=int, default=3)
        command.add_argument(
            "--quick-repeat",
            type=int,
            default=9,
            help="repetitions (at least --repeat) of a workload whose first featurekit run takes under a second",
        )
        command.add_argument("--output", type=Path, default=HERE / "results")
    run.add_argument("--no-feast", action="store_true")
    shapes = sub.add_parser("shapes", help="the 1-view training set on every data shape, against four floors")
    shapes.add_argument("--only", default="", help="comma-separated shapes (default: the table's and the chart's)")
    shapes.add_argument("--repeat", type=int, default=3)
    shapes.add_argument("--timeout", type=float, default=300.0, help="seconds before a contender's run is killed")
    shapes.add_argument("--output", type=Path, default=HERE / "results")
    windows = sub.add_parser("windows", help="training sets and lookups of 12 window features, against floors")
    windows.add_argument("--scale", choices=["tiny", "medium", "large"], default="medium")
    windows.add_argument("--only", default="", help="comma-separated contenders (default: all)")
    windows.add_argument("--repeat", type=int, default=3)
    windows.add_argument("--timeout", type=float, default=300.0, help="seconds before a contender's run is killed")
    windows.add_argument("--pandas-timeout", type=float, default=300.0, help="the same, for the pandas floor")
    windows.add_argument("--sample", type=int, default=2000, help="spine rows checked against the brute-force oracle")
    windows.add_argument("--lookup-calls", type=int, default=2000, help="timed calls per lookup kind and round")
    windows.add_argument("--output", type=Path, default=HERE / "results")
    sub.add_parser("report", help="rewrite RESULTS.md and the charts from results/*.json")
    on_redis = sub.add_parser("redis", help="the Redis online store: materialize, load and lookups vs redis-py")
    on_redis.add_argument("--scale", choices=sorted(SCALES), default="medium")
    on_redis.add_argument("--repeat", type=int, default=3)
    on_redis.add_argument("--url", default="", help="a Redis to use (its database is flushed); default: start one")
    on_redis.add_argument("--no-feast", action="store_true", help="skip Feast's materialize to Redis")
    on_redis.add_argument("--output", type=Path, default=HERE / "results")
    sub.add_parser("redis-child").add_argument("argv", nargs=argparse.REMAINDER)
    servelog = sub.add_parser("servelog", help="1-entity lookups with the serving log off and on (sample 1.0)")
    servelog.add_argument("--scale", choices=sorted(SCALES), default="medium")
    servelog.add_argument("--repeat", type=int, default=6, help="rounds (each: a process per mode, blocks in turn)")
    servelog.add_argument("--blocks", type=int, default=100, help="blocks of 500 timed calls per process and round")
    servelog.add_argument("--output", type=Path, default=HERE / "results")
    sub.add_parser("servelog-child").add_argument("argv", nargs=argparse.REMAINDER)
    on_quality = sub.add_parser("quality", help="offline materialize with and without the quality pass")
    on_quality.add_argument("--scale", choices=sorted(SCALES), default="medium")
    on_quality.add_argument("--repeat", type=int, default=7, help="rounds, each measuring both")
    on_quality.add_argument("--output", type=Path, default=HERE / "results")
    sub.add_parser("quality-child").add_argument("argv", nargs=argparse.REMAINDER)
    on_drift = sub.add_parser("drift", help="a drift report between two 10M-row view versions")
    on_drift.add_argument("--rows", type=int, default=10_000_000)
    on_drift.add_argument("--repeat", type=int, default=5, help="rounds, each measuring every contender")
    on_drift.add_argument("--output", type=Path, default=HERE / "results")
    sub.add_parser("drift-child").add_argument("argv", nargs=argparse.REMAINDER)
    sub.add_parser("child").add_argument("argv", nargs=argparse.REMAINDER)
    sub.add_parser("http", help="the HTTP feature server vs a bare ASGI floor and feast serve").add_argument(
        "argv", nargs=argparse.REMAINDER, help="the scale (default medium)"
    )
    under_load = sub.add_parser("load", help="the server under a bounded load: idle, materializing, Redis restarted")
    under_load.add_argument("--scale", choices=sorted(SCALES), default="medium")
    under_load.add_argument("--seconds", type=float, default=15.0, help="duration of each phase")
    under_load.add_argument("--clients", type=int, default=2, help="keep-alive client threads")
    under_load.add_argument("--rate", type=float, default=250.0, help="requests per second of each client")
    under_load.add_argument(
        "--writer-nice", type=int, default=10, help="also a materialize phase with the writer at this nice (0: none)"
    )
    under_load.add_argument(
        "--no-writer-idle",
        dest="writer_idle",
        action="store_false",
        help="leave out the materialize phase with the writer at the idle CPU priority (SCHED_IDLE)",
    )
    under_load.add_argument(
        "--no-writer-pinned",
        dest="writer_pinned",
        action="store_false",
        help="leave out the materialize phase with the writer confined to the last CPU (--cpus)",
    )
    under_load.add_argument("--output", type=Path, default=HERE / "results")
    ui = sub.add_parser("ui", help="server time of every web UI page with 500 views and 10,000 registry commits")
    ui.add_argument("--repeat", type=int, default=20)
    ui.add_argument("--cold", type=int, default=5, help="first requests on this many new readers")
    ui.add_argument("--output", type=Path, default=HERE / "results")
    loop = sub.add_parser("materialize-loop")
    loop.add_argument("repo", type=Path)
    loop.add_argument("seconds", type=float)
    loop.add_argument("--idle", action="store_true")
    loop.add_argument("--cpus", default=None)
    return parser


def main() -> None:
    options = _parser().parse_args()
    if options.command == "child":
        child(options.argv)
    elif options.command == "redis":
        from benchmarks.redis_online import run

        sys.exit(run(options))
    elif options.command == "quality":
        from benchmarks.quality import run as run_quality

        sys.exit(run_quality(options))
    elif options.command == "drift":
        from benchmarks.drift import run as run_drift

        sys.exit(run_drift(options))
    elif options.command == "drift-child":
        from benchmarks.drift import child as drift_child

        drift_child(options.argv)
    elif options.command == "quality-child":
        from benchmarks.quality import child as quality_child

        quality_child(options.argv)
    elif options.command == "redis-child":
        from benchmarks.redis_online import child as redis_child

        redis_child(options.argv)
    elif options.command == "servelog":
        from benchmarks.servelog import run as run_servelog

        sys.exit(run_servelog(options))
    elif options.command == "servelog-child":
        from benchmarks.servelog import child as servelog_child

        servelog_child(options.argv)
    elif options.command == "http":
        from benchmarks.http_server import main as http_main

        http_main(options.argv)
    elif options.command == "load":
        from benchmarks.serving_load import run as run_load

        sys.exit(run_load(options))
    elif options.command == "ui":
        from benchmarks.ui_pages import run as run_ui

        sys.exit(run_ui(options))
    elif options.command == "materialize-loop":
        from benchmarks.contenders import materialize_loop

        materialize_loop(options.repo, options.seconds, options.idle, options.cpus)
    elif options.command == "report":
        from benchmarks.report import write_report

        write_report(HERE / "results", HERE / "RESULTS.md")
    elif options.command == "shapes":
        from benchmarks.shapes import run_shapes

        sys.exit(run_shapes(options))
    elif options.command == "windows":
        from benchmarks.windows import run_windows

        sys.exit(run_windows(options))
    elif options.command == "scaling":
        status = 0
        for scale in SCALING:
            status |= run_all(argparse.Namespace(**vars(options), scale=scale, only=SCALING_WORKLOADS, no_feast=True))
        sys.exit(status)
    else:
        sys.exit(run_all(options))


if __name__ == "__main__":
    main()
