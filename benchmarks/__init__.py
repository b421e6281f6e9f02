"""Benchmarks: featurekit against the fastest hand-written DuckDB/SQLite equivalent and Feast.

Run ``python -m benchmarks run --scale medium`` from the project root; see ``RESULTS.md``.
"""
