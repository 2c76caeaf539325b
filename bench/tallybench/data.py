"""The data every engine reads: TPC-H as Parquet from `tally gen-tpch`, plus orders and
lineitem bucketed on the order key (orders_b, lineitem_b)."""

import pathlib
import shutil
import subprocess
import sys

TPCH_TABLES = ["region", "nation", "supplier", "customer", "part", "partsupp", "orders", "lineitem"]
BUCKETED_TABLES = {"orders_b": ("orders", "o_orderkey"), "lineitem_b": ("lineitem", "l_orderkey")}
# Files per large table, and buckets per bucketed table: 2 per Tally worker.
PARTS = 6
BUCKETS = 6

COMPLETE = ".complete"


def ensure_data(tally, scale, data_dir):
    """Generates the tables into data_dir unless a complete copy is there; returns
    {table: folder} for every table of the query set."""
    data_dir = pathlib.Path(data_dir)
    if not (data_dir / COMPLETE).exists():
        shutil.rmtree(data_dir, ignore_errors=True)
        data_dir.mkdir(parents=True)
        log = lambda *a: print(*a, file=sys.stderr, flush=True)
        log(f"generating TPC-H scale {scale} into {data_dir}")
        gen = [str(tally), "gen-tpch", "--scale", str(scale), "--parts", str(PARTS)]
        subprocess.run(gen + ["--out", str(data_dir)], check=True, stdout=subprocess.DEVNULL)
        staging = data_dir / "bucketed-staging"
        bucket_by = []
        for _, (source, key) in BUCKETED_TABLES.items():
            bucket_by += ["--bucket-by", f"{source}={key}"]
        subprocess.run(
            gen + ["--out", str(staging), "--buckets", str(BUCKETS)] + bucket_by,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        for name, (source, _) in BUCKETED_TABLES.items():
            (staging / source).rename(data_dir / name)
        shutil.rmtree(staging)
        (data_dir / COMPLETE).touch()
    return {name: data_dir / name for name in TPCH_TABLES + list(BUCKETED_TABLES)}
