"""Spark (PySpark from PyPI) on the same Parquet files, in `local[2]` (one JVM, the machine's
2 cores) or `local-cluster[3,1,2048]` (3 executor processes of 1 core and 2 GB: shuffles cross
processes as in a cluster).

Each master runs in its own Python process (`python -m tallybench.spark_engine SPEC OUT`), so
JVM settings apply and one master's state does not leak into the other's timings.

Shuffle bytes come from Spark's REST API (`/api/v1/applications/<app>/jobs` and `/stages`):
each run of a query is its own job group `<query>#<run>`; its jobs are those in that group
plus those submitted during the run under another group (Spark runs broadcast collection jobs
under a group of their own), and its stages are those jobs' completed stages (skipped stages
reused earlier shuffle output and moved nothing).
"""

import datetime
import json
import os
import pathlib
import sys
import time
import urllib.request

from . import canonical
from .results import Result

BUCKETS = 6


def log(message):
    # stdout: the driver passes it through, while the JVM's log (stderr) goes to a file.
    print(f"[bench] {message}", flush=True)


def spark_session(master, work_dir):
    from pyspark.sql import SparkSession

    cluster = master.startswith("local-cluster")
    builder = (
        SparkSession.builder.master(master)
        .appName(f"tally-bench {master}")
        .config("spark.driver.memory", "2g" if cluster else "4g")
        .config("spark.sql.warehouse.dir", str(pathlib.Path(work_dir) / "spark-warehouse"))
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.ui.retainedJobs", "100000")
        .config("spark.ui.retainedStages", "100000")
        .config("spark.sql.ui.retainedExecutions", "100000")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.driver.host", "127.0.0.1")
    )
    if cluster:
        builder = builder.config("spark.executor.memory", "2g")
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark


def register_tables(spark, tables, bucketed, spark_bucketed_dir):
    """Plain tables are temporary views over the Parquet folders. The bucketed tables are
    Spark's own: bucketBy tables with the same bucket count on the same key, written once
    from the same Parquet files (the plain orders and lineitem) and registered afterwards
    from where they were written."""
    for name, path in tables.items():
        if name not in bucketed:
            spark.read.parquet(str(path)).createOrReplaceTempView(name)
    spark_bucketed_dir = pathlib.Path(spark_bucketed_dir)
    complete = spark_bucketed_dir / ".complete"
    for name, (source, key) in bucketed.items():
        location = spark_bucketed_dir / name
        if complete.exists():
            schema = spark.read.parquet(str(location)).schema
            columns = ", ".join(f"{f.name} {f.dataType.simpleString()}" for f in schema)
            spark.sql(
                f"CREATE TABLE {name} ({columns}) USING parquet "
                f"CLUSTERED BY ({key}) INTO {BUCKETS} BUCKETS LOCATION '{location}'"
            )
        else:
            log(f"spark: writing {name} as a bucketBy table from {source}")
            (
                spark.table(source)
                .repartition(BUCKETS, key)
                .write.bucketBy(BUCKETS, key)
                .mode("overwrite")
                .option("path", str(location))
                .saveAsTable(name)
            )
    complete.touch()


class RestApi:
    def __init__(self, spark):
        context = spark.sparkContext
        # The UI listens on every interface; ask it on the loopback address.
        port = context.uiWebUrl.rsplit(":", 1)[1]
        self.base = f"http://127.0.0.1:{port}/api/v1/applications/{context.applicationId}"

    def get(self, path):
        with urllib.request.urlopen(self.base + path, timeout=60) as response:
            return json.load(response)

    def settled(self, jobs, stages):
        """Whether the status store has every job and stage of the runs finished."""
        return all(j["status"] != "RUNNING" for j in jobs) and all(
            s["status"] not in ("ACTIVE", "PENDING") for s in stages
        )

    def snapshot(self):
        for _ in range(100):
            jobs, stages = self.get("/jobs"), self.get("/stages")
            if self.settled(jobs, stages):
                return jobs, stages
            time.sleep(0.2)
        return jobs, stages


def parse_time(text):
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%f%Z").replace(
        tzinfo=datetime.timezone.utc
    )


def run_shuffle(jobs, stages, group, started, ended):
    """(write bytes, remote read bytes, jobs, stages) of one run."""
    mine = [
        j
        for j in jobs
        if j.get("jobGroup") == group or started <= parse_time(j["submissionTime"]) <= ended
    ]
    stage_ids = {s for j in mine for s in j["stageIds"]}
    done = [s for s in stages if s["stageId"] in stage_ids and s["status"] == "COMPLETE"]
    write = sum(s["shuffleWriteBytes"] for s in done)
    remote = sum(s["shuffleRemoteBytesRead"] for s in done)
    return write, remote, sorted(j["jobId"] for j in mine), sorted(s["stageId"] for s in done)


def run_spark(spec):
    spark = spark_session(spec["master"], spec["work_dir"])
    bucketed = {name: tuple(v) for name, v in spec["bucketed"].items()}
    register_tables(spark, spec["tables"], bucketed, spec["spark_bucketed_dir"])
    context = spark.sparkContext
    rest = RestApi(spark)
    results = {}
    for name, sql in spec["queries"]:
        log(f"{spec['engine']}: {name}")
        windows = []
        try:
            times, rows = [], []
            for run in range(spec["warmup"] + spec["runs"]):
                group = f"{name}#{run}"
                context.setJobGroup(group, f"tally-bench {name} run {run}")
                started = datetime.datetime.now(datetime.timezone.utc)
                begin = time.perf_counter()
                rows = spark.sql(sql).collect()
                elapsed = (time.perf_counter() - begin) * 1000
                windows.append((group, started, datetime.datetime.now(datetime.timezone.utc)))
                if run >= spec["warmup"]:
                    times.append(elapsed)
            jobs, stages = rest.snapshot()
            per_run = [run_shuffle(jobs, stages, *window) for window in windows]
            write, remote, job_ids, stage_ids = per_run[-1]
            results[name] = Result(
                times_ms=times,
                rows=len(rows),
                checksum=canonical.checksum(rows),
                shuffle_bytes=remote,
                shuffle_write_bytes=write,
                detail={
                    "job_group": windows[-1][0],
                    "jobs": job_ids,
                    "stages": stage_ids,
                    "write_bytes_per_run": [r[0] for r in per_run],
                    "remote_read_bytes_per_run": [r[1] for r in per_run],
                },
            )
        except Exception as e:  # a failed query is reported; the others still run
            results[name] = Result.failed(f"{type(e).__name__}: {e}".splitlines()[0])
        finally:
            context.setLocalProperty("spark.jobGroup.id", None)
    spark.stop()
    return results


def version():
    import pyspark

    return pyspark.__version__


def main():
    spec = json.loads(pathlib.Path(sys.argv[1]).read_text())
    # local-cluster starts its executors from SPARK_HOME: the pip package is one.
    os.environ.setdefault("SPARK_HOME", str(pathlib.Path(__import__("pyspark").__file__).parent))
    # Driver, executors and their shuffle service talk over the loopback address only.
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    results = run_spark(spec)
    pathlib.Path(sys.argv[2]).write_text(
        json.dumps({name: r.to_json() for name, r in results.items()})
    )


if __name__ == "__main__":
    main()
