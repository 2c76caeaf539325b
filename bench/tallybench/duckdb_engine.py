"""DuckDB (its Python package) on the same Parquet files, with its default of one thread per
core."""

import time

from . import canonical
from .results import Result


def run_duckdb(tables, queries, warmup, runs, log):
    """{query: Result}; each table is a view over its folder's Parquet files."""
    import duckdb

    con = duckdb.connect()
    for name, path in tables.items():
        con.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet('{path}/*.parquet')")
    results = {}
    for name, sql in queries:
        log(f"duckdb: {name}")
        try:
            times, rows = [], []
            for run in range(warmup + runs):
                started = time.perf_counter()
                rows = con.execute(sql).fetchall()
                elapsed = (time.perf_counter() - started) * 1000
                if run >= warmup:
                    times.append(elapsed)
            results[name] = Result(
                times_ms=times, rows=len(rows), checksum=canonical.checksum(rows)
            )
        except duckdb.Error as e:
            results[name] = Result.failed(str(e))
    con.close()
    return results


def version():
    import duckdb

    return duckdb.__version__
