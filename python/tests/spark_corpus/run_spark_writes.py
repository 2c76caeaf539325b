"""Runs table-writing Spark SQL statements on PySpark, the reference for Tally's, and writes
what the table holds afterwards as JSON: {"rows": [[...], ...], "partitions": [...]}.

Run with the Spark venv's Python (scripts/install-deps spark):
run_spark_writes.py STATEMENTS_JSON OUT_JSON TABLE=PATH ..."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pyspark.sql import SparkSession


def main() -> None:
    spec, out, tables = json.loads(Path(sys.argv[1]).read_text()), Path(sys.argv[2]), sys.argv[3:]
    spark = (
        SparkSession.builder.master("local[2]")
        .appName("tally-spark-writes")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.ui.enabled", "false")
        .config("spark.driver.memory", "1g")
        # Tally's default (tally.partition_overwrite_mode = dynamic): replace only the
        # partitions a query writes.
        .config("spark.sql.sources.partitionOverwriteMode", "dynamic")
        .config("spark.sql.warehouse.dir", str(Path(spec["location"]).parent / "spark-warehouse"))
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    for table in tables:
        name, path = table.split("=", 1)
        spark.read.parquet(path).createOrReplaceTempView(name)
    for statement in spec["statements"]:
        spark.sql(statement)
    rows = [list(row) for row in spark.sql(spec["query"]).collect()]
    location = Path(spec["location"])
    partitions = sorted(
        str(folder.relative_to(location))
        for folder in location.glob("*=*")
        if any(f.suffix == ".parquet" for f in folder.iterdir())
    )
    out.write_text(json.dumps({"rows": rows, "partitions": partitions}))
    spark.stop()


if __name__ == "__main__":
    main()
