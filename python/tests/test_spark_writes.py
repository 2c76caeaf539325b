"""Hive-style table writes in Spark SQL, run unchanged on PySpark (the reference, with
`spark.sql.sources.partitionOverwriteMode = dynamic`, Tally's default) and on a `tally local`
cluster in a Spark session: after the same CREATE TABLE ... PARTITIONED BY and the same
static, dynamic and plain inserts and overwrites, both tables hold the same rows in the same
partition folders."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from conftest import running_cluster, tally_binary
from test_spark_corpus import SPARK_PYTHON

CORPUS = Path(__file__).resolve().parent / "spark_corpus"

STATEMENTS = [
    "CREATE TABLE clicks (ad BIGINT, clicks BIGINT, day STRING) USING parquet PARTITIONED BY (day) "
    "LOCATION '{location}'",
    "INSERT INTO clicks SELECT ad, clicks, day FROM staged",
    "INSERT OVERWRITE TABLE clicks PARTITION (day) SELECT ad, clicks * 10, day FROM staged "
    "WHERE day = '2026-11-02'",
    "INSERT INTO TABLE clicks PARTITION (day = '2026-11-03') SELECT ad, clicks FROM staged WHERE ad = 1",
    "INSERT OVERWRITE TABLE clicks PARTITION (day = '2026-11-01') SELECT ad, 0 FROM staged WHERE ad = 2",
    "INSERT OVERWRITE TABLE clicks PARTITION (day) SELECT ad, sum(clicks), concat(day, '-x') FROM staged "
    "WHERE ad = 3 GROUP BY ad, day",
]
QUERY = "SELECT day, ad, clicks FROM clicks ORDER BY day, ad, clicks"


def stage(folder: Path) -> Path:
    folder.mkdir(parents=True)
    rows = [(ad, ad * 100 + d, f"2026-11-0{d}") for ad in (1, 2, 3) for d in (1, 2)]
    table = pa.table({
        "ad": pa.array([r[0] for r in rows], pa.int64()),
        "clicks": pa.array([r[1] for r in rows], pa.int64()),
        "day": pa.array([r[2] for r in rows], pa.string()),
    })
    pq.write_table(table, folder / "part-0.parquet")
    return folder


def partitions(location: Path) -> list[str]:
    return sorted(str(f.relative_to(location)) for f in location.glob("*=*")
                  if any(x.suffix == ".parquet" for x in f.iterdir()))


def test_partition_writes_leave_the_table_as_spark_does(tmp_path):
    staged = stage(tmp_path / "staged")

    spark_location = tmp_path / "spark" / "clicks"
    spec = tmp_path / "spark-statements.json"
    spec.write_text(json.dumps({
        "location": str(spark_location),
        "statements": [s.format(location=spark_location) for s in STATEMENTS],
        "query": QUERY,
    }))
    out = tmp_path / "spark-table.json"
    subprocess.run([str(SPARK_PYTHON), str(CORPUS / "run_spark_writes.py"), str(spec), str(out),
                    f"staged={staged}"], check=True, timeout=600)
    spark = json.loads(out.read_text())

    tally_location = tmp_path / "tally" / "clicks"
    with running_cluster(tmp_path, {"staged": staged}) as cluster:
        for statement in STATEMENTS:
            cluster.tally("sql", "--set", "tally.sql_dialect=spark", "--quiet", "-e",
                          statement.format(location=tally_location))
        done = subprocess.run(
            [str(tally_binary()), "sql", "--coordinator", cluster.endpoint, "--token-file",
             str(cluster.token_file), "--set", "tally.sql_dialect=spark", "--format", "json",
             "--quiet", "-e", QUERY],
            capture_output=True, text=True, timeout=120, check=True)
    tally_rows = [[row["day"], row["ad"], row["clicks"]] for row in json.loads(done.stdout)]

    # day 1: 2 rows (static overwrite), day 2: 3 (dynamic overwrite), day 3: 2 (static append),
    # and the two "-x" days the last dynamic overwrite made.
    assert len(spark["rows"]) == 9, spark["rows"]
    assert tally_rows == spark["rows"]
    assert partitions(tally_location) == spark["partitions"]
