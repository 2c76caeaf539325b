"""Runs every query of the corpus on PySpark, the reference answers, and writes them as JSON:
{query name: {"columns": [...], "rows": [[...], ...]} or {"error": "..."}}.

Run with the Spark venv's Python (scripts/install-deps spark):
run_spark.py QUERIES_DIR OUT_JSON TABLE=PATH ..."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import logging
import sys
from pathlib import Path

from pyspark.sql import SparkSession


def plain(value):
    """A Spark value as JSON: decimals as floats, dates and times as ISO text."""
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    return value


def main() -> None:
    queries, out, tables = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:]
    spark = (
        SparkSession.builder.master("local[2]")
        .appName("tally-spark-corpus")
        .config("spark.sql.session.timeZone", "UTC")
        # Spark 3's defaults, which datafusion-spark's functions follow (non-ANSI).
        .config("spark.sql.ansi.enabled", "false")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.ui.enabled", "false")
        .config("spark.driver.memory", "1g")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    # A failing query is an answer here, not a log line with Java's stack.
    logging.getLogger("SQLQueryContextLogger").setLevel(logging.CRITICAL)
    for spec in tables:
        name, path = spec.split("=", 1)
        spark.read.parquet(path).createOrReplaceTempView(name)
    answers = {}
    for query in sorted(queries.glob("*.sql")):
        try:
            frame = spark.sql(query.read_text())
            rows = frame.collect()
            answers[query.stem] = {
                "columns": frame.columns,
                "rows": [[plain(v) for v in row] for row in rows],
            }
        except Exception as e:  # noqa: BLE001 - every failure is an answer to compare
            answers[query.stem] = {"error": str(e).splitlines()[0]}
    out.write_text(json.dumps(answers, indent=1))
    spark.stop()


if __name__ == "__main__":
    main()
