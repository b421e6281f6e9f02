"""The workloads: what each contender's child process runs, and how the harness repeats it.

Child arguments of "featurekit" and "floor" go to ``python -m benchmarks child KIND SCALE OUT ARGS``;
those of "feast" to ``<feast-python> -m benchmarks.feast_child KIND FOLDER OUT ARGS``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# A latency-sensitive serving process should run polars with one thread: polars 2.1 sends even a
# 1-row select to its thread pool, which costs more than the work on 2 cores.
SINGLE_THREAD_POLARS = {"POLARS_MAX_THREADS": "1"}

QUICK_SECONDS = 1.0


@dataclass(frozen=True)
class Workload:
    title: str
    contenders: dict[str, list[str]]
    views: int = 1  # source views the scale must have
    once: bool = False  # one repetition only
    # More rounds (``--quick-repeat``) when featurekit's first run took under QUICK_SECONDS: a job of
    # a few hundred ms moves by tens of ms between runs on this machine, and three samples left its
    # ratio to the floor to chance (1.04x and 1.20x for the same code in two runs of one evening).
    repeat_if_quick: bool = True
    env: dict[str, str] = field(default_factory=dict)  # extra environment of every child


def _lookup(size: int, on_demand: bool, single_thread: bool) -> Workload:
    title = f"online lookup, {size} {'entity' if size == 1 else 'entities'} x 8 features"
    title += " + 1 on-demand" if on_demand else ""
    title += ", POLARS_MAX_THREADS=1" if single_thread else ""
    contenders = {"featurekit": ["lookup", str(size), "1" if on_demand else "0"]}
    if not on_demand and not single_thread:
        contenders |= {"floor": ["floor_lookup", str(size)], "feast": ["lookup", str(size)]}
    # Repeated like the batch workloads: polars' pool latency differs between processes (bimodal on a busy box).
    # Lookups measure thousands of calls per run already.
    return Workload(title, contenders, env=SINGLE_THREAD_POLARS if single_thread else {}, repeat_if_quick=False)


def _lookup_variants() -> dict[str, Workload]:
    """Every lookup size with and without the on-demand view, by default and with one polars thread."""
    found = {}
    for size in (1, 100, 1000):
        for on_demand in (False, True):
            for single_thread in (False, True):
                if size > 1 and single_thread and not on_demand:
                    continue  # polars serves only on-demand views: nothing to compare
                name = f"lookup_{size}{'_on_demand' * on_demand}{'_single_thread' * single_thread}"
                found[name] = _lookup(size, on_demand, single_thread)
    return found


WORKLOADS: dict[str, Workload] = {
    "training_1view_arrow": Workload(
        "training set, 1 view, to Arrow",
        {
            "featurekit": ["training", "1", "arrow"],
            "floor": ["floor_training", "1", "arrow"],
            "feast": ["training", "1", "duckdb"],
        },
    ),
    "training_1view_parquet": Workload(
        "training set, 1 view, to Parquet",
        {"featurekit": ["training", "1", "parquet"], "floor": ["floor_training", "1", "parquet"]},
    ),
    "training_3views_arrow": Workload(
        "training set, 3 views, to Arrow",
        {
            "featurekit": ["training", "3", "arrow"],
            "floor": ["floor_training", "3", "arrow"],
            "feast": ["training", "3", "duckdb"],
        },
        views=3,
    ),
    "training_3views_parquet": Workload(
        "training set, 3 views, to Parquet",
        {"featurekit": ["training", "3", "parquet"], "floor": ["floor_training", "3", "parquet"]},
        views=3,
    ),
    "materialize_offline": Workload(
        "offline materialize (source rows/s)",
        {"featurekit": ["materialize", "offline"], "floor": ["floor_materialize_offline"]},
    ),
    "materialize_online": Workload(
        "materialize, offline + online (floor: Delta write + online load)",
        {"featurekit": ["materialize", "online"], "floor": ["floor_materialize_full"], "feast": ["materialize"]},
    ),
    "online_load_step": Workload(
        "online load step alone (newest row per entity -> SQLite)",
        {"featurekit": ["online_load"], "floor": ["floor_online_load"]},
    ),
    "materialize_incremental_day": Workload(
        "incremental materialize of one new day (offline + online)",
        {
            "featurekit": ["incremental"],
            "floor": ["floor_incremental"],
            "feast": ["materialize_incremental"],
        },
    ),
    "apply_50_views": Workload(
        "cold apply of 50 feature views",
        {"featurekit": ["apply_many", "50"], "feast": ["apply_many", "50"]},
    ),
    **_lookup_variants(),
    "lookup_during_materialize": Workload(
        "1-entity lookups while another process materializes",
        {"featurekit": ["lookup_during_materialize"]},
        once=True,
    ),
}
CALLS = {"1": 5000, "100": 1000, "1000": 200}
FEAST_CALLS = {"1": 1000, "100": 200, "1000": 40}
