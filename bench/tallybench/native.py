"""The engines built from this repository: Tally (through the release `tally` CLI against a
`tally local` cluster) and single-process DataFusion (`datafusion-single`). Standard library
only, so the smoke test runs without the virtual environment."""

import csv
import io
import json
import pathlib
import signal
import subprocess
import tempfile
import time

from . import canonical
from .results import Result

# How each Tally engine asks for its planner.
TALLY_PLANNERS = {"tally": "minimized", "tally-naive": "naive"}


class TallyCluster:
    """`tally local --workers N` in the background, with every table registered."""

    def __init__(self, tally, workers, tables, log_path):
        self.tally = str(tally)
        # Spools go 10 s after each job (the answer is fetched at once), not after the
        # default 10 minutes: scale-1 naive plans would fill the disk otherwise.
        args = [self.tally, "local", "--workers", str(workers), "--port", "0",
                "--result-ttl-secs", "10"]
        for name, path in tables.items():
            args += ["--table", f"{name}={path}"]
        self.log = open(log_path, "w")
        self.process = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=self.log, text=True
        )
        self.endpoint = None
        for line in self.process.stdout:
            if "coordinator at " in line:
                self.endpoint = line.split("coordinator at ", 1)[1].split()[0]
                break
        if self.endpoint is None:
            self.close()
            raise RuntimeError(f"tally local did not start; see {log_path}")

    def close(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process.stdout.close()
        self.log.close()

    def run(self, sql, planner, timeout):
        """Runs sql once: (wall ms, answer rows, job metrics)."""
        with tempfile.NamedTemporaryFile(suffix=".json") as metrics_file:
            args = [
                self.tally, "sql", "--coordinator", self.endpoint, "--planner", planner,
                "-e", sql, "--format", "csv", "--quiet", "--metrics-json", metrics_file.name,
            ]
            started = time.perf_counter()
            done = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
            wall_ms = (time.perf_counter() - started) * 1000
            if done.returncode != 0:
                raise RuntimeError(done.stderr.strip() or f"tally sql exited {done.returncode}")
            metrics = json.loads(pathlib.Path(metrics_file.name).read_text())
        rows = list(csv.reader(io.StringIO(done.stdout)))[1:]
        return wall_ms, rows, metrics


def run_tally(tally, tables, queries, engines, workers, warmup, runs, timeout, work_dir, log):
    """{engine: {query: Result}} for the Tally engines asked for (tally, tally-naive)."""
    results = {engine: {} for engine in engines}
    cluster = TallyCluster(tally, workers, tables, pathlib.Path(work_dir) / "tally-local.log")
    try:
        for name, sql in queries:
            for engine in engines:
                planner = TALLY_PLANNERS[engine]
                log(f"{engine}: {name}")
                try:
                    times, elapsed = [], []
                    for run in range(warmup + runs):
                        wall_ms, rows, metrics = cluster.run(sql, planner, timeout)
                        if run >= warmup:
                            times.append(wall_ms)
                            elapsed.append(metrics["elapsed_ms"])
                    results[engine][name] = Result(
                        times_ms=times,
                        rows=len(rows),
                        checksum=canonical.checksum(rows),
                        shuffle_bytes=metrics["shuffle_bytes"],
                        broadcast_bytes=sum(
                            s["shuffle_bytes"]
                            for s in metrics["stages"]
                            if any(rule.startswith("broadcast") for rule in s["rules"])
                        ),
                        detail={
                            "job_elapsed_ms": elapsed,
                            "shuffle_rows": metrics["shuffle_rows"],
                            "shuffle_uncompressed_bytes": metrics["shuffle_uncompressed_bytes"],
                            "stages": [
                                {k: s[k] for k in ("stage_id", "output", "tasks", "shuffle_bytes", "rules")}
                                for s in metrics["stages"]
                            ],
                        },
                    )
                except (RuntimeError, subprocess.TimeoutExpired) as e:
                    results[engine][name] = Result.failed(str(e))
    finally:
        cluster.close()
    return results


def run_datafusion(binary, tables, queries, warmup, runs, timeout, work_dir, log):
    """{query: Result} from one `datafusion-single` process that runs every query."""
    work_dir = pathlib.Path(work_dir)
    answers = work_dir / "datafusion-answers"
    args = [str(binary), "--warmup", str(warmup), "--runs", str(runs), "--out", str(answers)]
    for name, path in tables.items():
        args += ["--table", f"{name}={path}"]
    for name, sql in queries:
        query_file = work_dir / f"{name}.sql"
        query_file.write_text(sql)
        args += ["--query", f"{name}={query_file}"]
    log("datafusion: every query in one process")
    try:
        done = subprocess.run(
            args, capture_output=True, text=True, timeout=timeout * len(queries)
        )
    except subprocess.TimeoutExpired as e:
        return {name: Result.failed(f"timed out: {e}") for name, _ in queries}
    measured = {}
    for line in done.stdout.splitlines():
        record = json.loads(line)
        measured[record["query"]] = record
    results = {}
    for name, _ in queries:
        if name not in measured:
            error = done.stderr.strip() or f"datafusion-single exited {done.returncode}"
            results[name] = Result.failed(error)
            continue
        with open(answers / f"{name}.csv", newline="") as f:
            rows = list(csv.reader(f))[1:]
        results[name] = Result(
            times_ms=measured[name]["times_ms"],
            rows=len(rows),
            checksum=canonical.checksum(rows),
            shuffle_bytes=None,
        )
    return results
