"""What deploy/compose-test and deploy/partition-test share: running commands with a time
limit, TPC-H report text, comparing CSV answers, and waiting for a cluster to settle."""

import math
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TABLES = ["region", "nation", "supplier", "customer", "part", "partsupp", "orders", "lineitem"]
# A report slower than this has hung: the test fails rather than waits.
REPORT_TIMEOUT_S = 180


def logger(name):
    def log(message):
        print(f"{name}: {message}", flush=True)

    return log


def run(args, env, timeout=600, check=True):
    """Runs `args`; with `check`, a non-zero exit is an error carrying its stderr."""
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise RuntimeError(
            f"{' '.join(args[:8])} ... failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    return done


def report_sql(query):
    return (ROOT / "tests/tpch" / f"{query}.sql").read_text().strip().rstrip(";")


def rows(csv_text):
    """The answer's rows, sorted, with numbers parsed, for comparing."""
    parsed = []
    for line in csv_text.strip().splitlines()[1:]:
        cells = []
        for cell in line.split(","):
            try:
                cells.append(float(cell))
            except ValueError:
                cells.append(cell)
        parsed.append(tuple(cells))
    return sorted(parsed, key=lambda r: tuple(str(c) for c in r))


def same(expected, actual):
    """Equal row for row, floating values within a relative 1e-9."""
    if len(expected) != len(actual):
        return False
    for want, got in zip(expected, actual):
        if len(want) != len(got):
            return False
        for a, b in zip(want, got):
            if isinstance(a, float) and isinstance(b, float):
                if not math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-6):
                    return False
            elif a != b:
                return False
    return True


def wait_for(what, predicate, timeout_s=120):
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(1)


def succeeds(attempt):
    """Whether `attempt` ran; a wrong answer (AssertionError) is never retried."""
    try:
        attempt()
        return True
    except AssertionError:
        raise
    except Exception:  # noqa: BLE001 - the cluster may still be settling
        return False
