"""bench/compare: Tally against Spark, DuckDB and single-process DataFusion on the same files."""
