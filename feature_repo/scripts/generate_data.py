"""Write the example repo's deterministic trip data (the same bytes on every run)."""

from __future__ import annotations

import sys
from pathlib import Path

import pyarrow.parquet as pq

from featurekit.example import trips

REPO = Path(__file__).resolve().parent.parent


def main(drivers: int = 500, days: int = 60) -> Path:
    target = REPO / "data" / "trips.parquet"
    target.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(trips(drivers=drivers, days=days), target)
    return target


if __name__ == "__main__":
    print(f"wrote {main()}", file=sys.stderr)
