"""A feature repo with every kind of value, and a real ``featurekit serve`` process on loopback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import httpx
import pyarrow as pa

from tests.conftest import BASIC_FEATURES, ts

READ_WRITE = "rw-token-0123456789abcdef"
READ_ONLY = "ro-token-0123456789abcdef"
INT64_MAX = 2**63 - 1

TRIP_RISK = """

@fk.on_demand(inputs=["driver_stats:conv_rate"], request={"trip_km": pl.Float64})
def trip_risk(df: pl.DataFrame) -> pl.DataFrame:
    return df.select(risk=pl.col("conv_rate") * pl.col("trip_km").log1p())
"""  # an on-demand view over BASIC_FEATURES

SERVER_FEATURES = (
    BASIC_FEATURES
    + TRIP_RISK
    + '''

fraud_v1 = fk.FeatureSet("fraud_v1", features=["driver_stats:conv_rate", "trip_risk"])


@fk.window_view(entity=driver, source=trips, windows=[timedelta(days=7)],
                aggregations=[fk.agg.count(), fk.agg.sum("distance_km"), fk.agg.last_n("distance_km", 2)])
def driver_window(trips: pl.DataFrame) -> pl.DataFrame:
    return trips.select("driver_id", "event_timestamp", "created", "distance_km")

item = fk.Entity("item", join_keys=["item_id"])
items = fk.FileSource("data/items.parquet", timestamp_field="event_timestamp")


@fk.feature_view(entity=item, source=items, frame="arrow", ttl=timedelta(days=30))
def typed(rows):
    """Every kind of value, as it is in the source."""
    return rows
'''
)

CONFIG = """
serve:
  token_file: tokens.txt
  limits:
    max_entities: 50
    max_body_bytes: 20000
"""

TRIPS = [
    (1, ts(0), ts(0), 1, 2, 1.0),
    (1, ts(2), ts(2), 2, 4, 2.0),
    (2, ts(1), ts(1), 3, 4, 3.0),
    (3, ts(0), ts(0), 1, 3, 0.1),
]
AT = ts(4)


def items_table() -> pa.Table:
    """Items 1, 2 and INT64_MAX, whose values test the typed JSON."""
    struct = pa.struct([("a", pa.float64()), ("when", pa.timestamp("us", tz="UTC"))])
    return pa.table(
        {
            "item_id": pa.array([1, 2, INT64_MAX], pa.int64()),
            "event_timestamp": pa.array([ts(1), ts(2), ts(3)], pa.timestamp("us", tz="UTC")),
            "exact": pa.array([0.1 + 0.2, 1e-300, 2.0**53 + 2], pa.float64()),
            "single": pa.array([1.1, None, 3.5], pa.float32()),
            "odd": pa.array([float("nan"), float("inf"), float("-inf")], pa.float64()),
            "big": pa.array([INT64_MAX, 0, 5], pa.uint64()),
            "seen": pa.array([ts(1, 0.5), ts(2) + timedelta(microseconds=7), None], pa.timestamp("us", tz="UTC")),
            "day": pa.array([date(2026, 1, 1), None, date(1999, 12, 31)], pa.date32()),
            "price": pa.array([Decimal("12.50"), Decimal("-0.01"), None], pa.decimal128(10, 2)),
            "tags": pa.array([["a", "b"], [], None], pa.list_(pa.string())),
            "scores": pa.array([[1.5, float("nan")], None, [float("inf")]], pa.list_(pa.float64())),
            "info": pa.array([{"a": 1.0, "when": ts(1)}, {"a": float("nan"), "when": None}, None], struct),
            "flag": pa.array([True, False, None], pa.bool_()),
            "name": pa.array(["naïve ☃", "", None], pa.string()),
        }
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class Server:
    """A running ``featurekit serve``."""

    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_server(repo: Path, *args: str, env: dict[str, str] | None = None, wait: bool = True) -> Server:
    """``featurekit --repo REPO serve --port P ARGS`` in a child process; waits for /healthz."""
    port = free_port()
    log = repo / f"serve-{port}.log"
    environment = {**os.environ, "FEATUREKIT_TOKEN": READ_WRITE, **(env or {})}
    environment = {k: v for k, v in environment.items() if v != ""}
    command = [sys.executable, "-m", "featurekit.cli", "--repo", str(repo), "serve", "--port", str(port), *args]
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=environment)
    server = Server(f"http://127.0.0.1:{port}", process, log)
    if not wait:
        return server
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the server exited with {process.returncode}: {log.read_text()}")
        try:
            if httpx.get(f"{server.url}/healthz", timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            time.sleep(0.1)
    server.stop()
    raise AssertionError(f"the server did not answer within 60 s: {log.read_text()}")


def write_tokens(repo: Path) -> None:
    (repo / "tokens.txt").write_text(f"# tokens of the test server\n{READ_ONLY} read\n{READ_WRITE} read,write\n")
