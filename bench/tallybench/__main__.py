"""bench/compare's driver: generate the data, run every engine on the query set, check the
answers agree, write bench/results/<date>-sf<N>.md (+ .json, .png) and print the tables.

Tally and DataFusion need only the standard library; DuckDB, Spark and the chart need the
packages bench/compare installs into bench/.venv.
"""

import argparse
import datetime
import json
import os
import pathlib
import platform
import shutil
import subprocess
import sys
import tempfile

from . import canonical, data, native, report
from .queries import DESCRIPTIONS, REPO, query_set
from .results import Result

NEEDS_VENV = {"duckdb", "spark-local", "spark-cluster"}
SPARK_MASTERS = {"spark-local": "local[2]", "spark-cluster": "local-cluster[3,1,2048]"}


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="bench/compare", description=__doc__)
    parser.add_argument("--scale", default="1", help="TPC-H scale factor (default 1)")
    parser.add_argument(
        "--engines", default=",".join(report.ENGINES),
        help="comma separated, of: " + ", ".join(report.ENGINES),
    )
    parser.add_argument("--runs", type=int, default=3, help="measured runs per query")
    parser.add_argument("--warmup", type=int, default=1, help="unmeasured runs first")
    parser.add_argument("--spark-runs", type=int, help="measured runs for Spark (default --runs)")
    parser.add_argument("--workers", type=int, default=3, help="Tally workers")
    parser.add_argument("--queries", help="comma separated subset of the query set")
    parser.add_argument(
        "--out", default=str(REPO / "bench" / "results"), help="folder for the results files"
    )
    parser.add_argument("--data", help="data folder (default data/bench-sf<scale>)")
    parser.add_argument("--bin-dir", help="folder holding tally and datafusion-single")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per query run")
    parser.add_argument("--note", action="append", default=[], help="a line for the results")
    parser.add_argument("--no-chart", action="store_true", help="no PNG (and no matplotlib)")
    parser.add_argument("--print-needs", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    unknown = [e for e in args.engines if e not in report.ENGINES]
    if unknown:
        parser.error(f"unknown engines {unknown}; known: {report.ENGINES}")
    return args


def needs(args):
    """What bench/compare must set up for this run."""
    words = []
    if NEEDS_VENV & set(args.engines) or not args.no_chart:
        words.append("venv")
    if any(e.startswith("spark") for e in args.engines):
        words.append("java")
    return words


def log(message):
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def run_spark(engine, args, tables, queries, work_dir):
    spec = {
        "engine": engine,
        "master": SPARK_MASTERS[engine],
        "tables": {k: str(v) for k, v in tables.items()},
        "bucketed": data.BUCKETED_TABLES,
        "spark_bucketed_dir": str(pathlib.Path(args.data) / "spark-bucketed"),
        "queries": queries,
        "warmup": args.warmup,
        "runs": args.spark_runs if args.spark_runs is not None else args.runs,
        "work_dir": str(work_dir),
    }
    spec_file = work_dir / f"{engine}-spec.json"
    out_file = work_dir / f"{engine}-results.json"
    spec_file.write_text(json.dumps(spec))
    log_file = work_dir / f"{engine}.log"
    with open(log_file, "w") as spark_log:
        done = subprocess.run(
            [sys.executable, "-m", "tallybench.spark_engine", str(spec_file), str(out_file)],
            cwd=REPO / "bench",
            stdout=sys.stderr,  # its progress lines; stdout holds only the tables
            stderr=spark_log,
            timeout=args.timeout * len(queries) * (spec["warmup"] + spec["runs"]) + 600,
        )
    if done.returncode != 0 or not out_file.exists():
        tail = log_file.read_text().strip().splitlines()[-5:]
        log(f"{engine} exited {done.returncode}; the end of {log_file}:\n" + "\n".join(tail))
        error = f"{engine} exited {done.returncode} (see its log)"
        return {name: Result.failed(error) for name, _ in queries}
    return {n: Result.from_json(r) for n, r in json.loads(out_file.read_text()).items()}


def versions(engines):
    found = {"DataFusion": "55.2 (datafusion-single and Tally's workers)"}
    commit = subprocess.run(
        ["git", "-C", str(REPO), "describe", "--always", "--dirty"],
        capture_output=True, text=True,
    ).stdout.strip()
    found["Tally"] = commit or "unknown"
    if "duckdb" in engines:
        from . import duckdb_engine

        found["DuckDB"] = duckdb_engine.version()
    if any(e.startswith("spark") for e in engines):
        from . import spark_engine

        java = subprocess.run(["java", "-version"], capture_output=True, text=True).stderr
        found["Spark"] = f"{spark_engine.version()} (PySpark), Java: {java.splitlines()[0]}"
    return found


def machine():
    cores = os.cpu_count()
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{platform.node()}: {cores} cores, {memory:.0f} GiB, {platform.platform()}"


def main(argv):
    args = parse_args(argv)
    if args.print_needs:
        print(" ".join(needs(args)))
        return 0
    if not args.bin_dir:
        print("bench/compare: --bin-dir is required (bench/compare passes it)", file=sys.stderr)
        return 2
    bin_dir = pathlib.Path(args.bin_dir)
    args.data = args.data or str(REPO / "data" / f"bench-sf{args.scale}")
    queries = query_set()
    if args.queries:
        wanted = args.queries.split(",")
        unknown = set(wanted) - {n for n, _ in queries}
        if unknown:
            print(f"bench/compare: unknown queries {sorted(unknown)}", file=sys.stderr)
            return 2
        queries = [(n, s) for n, s in queries if n in wanted]
    names = [n for n, _ in queries]

    tables = data.ensure_data(bin_dir / "tally", args.scale, args.data)
    work_dir = pathlib.Path(tempfile.mkdtemp(prefix="tally-bench-"))
    loads = {"start": os.getloadavg()[0]}
    started = datetime.datetime.now()
    results = {}
    tally_engines = [e for e in args.engines if e in native.TALLY_PLANNERS]
    if tally_engines:
        loads["before tally"] = os.getloadavg()[0]
        results.update(native.run_tally(
            bin_dir / "tally", tables, queries, tally_engines, args.workers,
            args.warmup, args.runs, args.timeout, work_dir, log,
        ))
    if "datafusion" in args.engines:
        loads["before datafusion"] = os.getloadavg()[0]
        results["datafusion"] = native.run_datafusion(
            bin_dir / "datafusion-single", tables, queries, args.warmup, args.runs,
            args.timeout, work_dir, log,
        )
    if "duckdb" in args.engines:
        from . import duckdb_engine

        loads["before duckdb"] = os.getloadavg()[0]
        results["duckdb"] = duckdb_engine.run_duckdb(tables, queries, args.warmup, args.runs, log)
    for engine in ("spark-local", "spark-cluster"):
        if engine in args.engines:
            loads[f"before {engine}"] = os.getloadavg()[0]
            results[engine] = run_spark(engine, args, tables, queries, work_dir)
    loads["end"] = os.getloadavg()[0]
    results = {e: results[e] for e in report.ENGINES if e in results}

    verdicts = report.agreement(results, names)
    failures = [(e, n) for e, r in results.items() for n in names if r[n].error]
    mismatches = [(n, d) for n, (_, d) in verdicts.items() if d]

    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"{started:%Y-%m-%d}-sf{args.scale}"
    spark_runs = args.spark_runs if args.spark_runs is not None else args.runs
    lines = [
        f"# Tally against Spark, DuckDB and DataFusion: TPC-H scale {args.scale}",
        "",
        f"Taken {started:%Y-%m-%d %H:%M} on {machine()}.",
        "Versions: " + "; ".join(f"{k} {v}" for k, v in versions(args.engines).items()) + ".",
        f"Median of {args.runs} measured runs after {args.warmup} warm-up run(s)"
        + (f" (Spark: {spark_runs} measured runs)" if spark_runs != args.runs else "")
        + f"; Tally on {args.workers} workers.",
        "1-minute load average: " + ", ".join(f"{k} {v:.1f}" for k, v in loads.items()) + ".",
    ]
    lines += [f"**Note:** {note}" for note in args.note]
    lines += ["", "Queries: TPC-H " + ", ".join(n for n in names if n != "bucketed")]
    lines += [f" and `{n}`: {d}." for n, d in DESCRIPTIONS.items() if n in names]
    if not args.no_chart:
        lines += ["", f"![wall time and shuffle bytes per query]({stem}.png)"]
    lines += ["", "## Wall time (median, ms)", ""] + report.time_table(results, names)
    if {"tally", "spark-local", "spark-cluster"} & set(results):
        lines += ["", "## Shuffle bytes", ""] + report.bytes_table(results, names)
    lines += ["", f"## Answers (checksum of the sorted rows, numbers to {canonical.PRECISION} "
              "decimal places)", ""]
    lines += report.answers_table(results, names, verdicts)
    lines += ["", "## Targets", ""] + report.targets(results, names)
    lines += ["", "## How it was measured", ""]
    lines += [report.METHOD.format(
        parts=data.PARTS, buckets=data.BUCKETS, workers=args.workers,
        precision=canonical.PRECISION,
    )]
    text = "\n".join(lines) + "\n"
    (out / f"{stem}.md").write_text(text)
    (out / f"{stem}.json").write_text(json.dumps(
        {e: {n: r.to_json() for n, r in rs.items()} for e, rs in results.items()}, indent=1,
    ) + "\n")
    if not args.no_chart:
        from . import chart

        chart.draw(results, names, f"TPC-H scale {args.scale}", out / f"{stem}.png")
    print(text)
    log(f"wrote {out / stem}.md")

    for engine, name in failures:
        log(f"FAILED {engine} {name}: {results[engine][name].error}")
    for name, disagree in mismatches:
        log(f"MISMATCH {name}: {', '.join(disagree)} disagree with the others")
    if failures or mismatches:
        log(f"kept the work folder {work_dir}")
        return 1
    shutil.rmtree(work_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
