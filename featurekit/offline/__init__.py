"""The offline side: sources read through DuckDB, versioned Delta tables, materialization and the
point-in-time join that builds training sets."""
