"""A real Tally cluster for the Python tests: the built `tally` binary runs `tally local` (a
coordinator and 3 workers, guarded by a token) over TPC-H scale 0.01 that it generates."""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

import tally_client

REPO = Path(__file__).resolve().parents[2]
TPCH_TABLES = ["region", "nation", "supplier", "customer", "part", "partsupp", "orders", "lineitem"]


def tally_binary() -> Path:
    """The binary `scripts/test` built: $TALLY_BIN, else $CARGO_TARGET_DIR/debug/tally."""
    if os.environ.get("TALLY_BIN"):
        return Path(os.environ["TALLY_BIN"])
    target = os.environ.get("CARGO_TARGET_DIR", str(Path.home() / ".cache" / "tally-target"))
    return Path(target) / "debug" / "tally"


@dataclass
class Cluster:
    endpoint: str
    token: str
    token_file: Path
    workdir: Path

    @property
    def url(self) -> str:
        return f"grpc://{self.endpoint}"

    def tally(self, *args: str) -> subprocess.CompletedProcess:
        """Runs a `tally` command against this cluster."""
        return subprocess.run(
            [str(tally_binary()), *args, "--coordinator", self.endpoint, "--token-file", str(self.token_file)],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def tpch_data(tmp_path_factory) -> Path:
    data = tmp_path_factory.mktemp("tpch")
    subprocess.run(
        [str(tally_binary()), "gen-tpch", "--scale", "0.01", "--out", str(data), "--parts", "4"],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return data


@contextlib.contextmanager
def running_cluster(workdir: Path, tables: dict, extra_args: list = (), url_scheme: str = "grpc", tls_root_certs=None):
    """`tally local` with 3 workers and a token over `tables`, until the block ends."""
    token = secrets.token_hex(24)
    token_file = workdir / "token"
    token_file.write_text(token)
    port = free_port()
    args = [str(tally_binary()), "local", "--workers", "3", "--port", str(port), "--token-file", str(token_file)]
    args += ["--data-root", str(workdir), "--table-dir", str(workdir / "tables"), *extra_args]
    for name, path in tables.items():
        args += ["--table", f"{name}={path}"]
    log_path = workdir / "tally-local.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=workdir)
        try:
            endpoint = f"127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            while True:
                try:
                    tally_client.connect(f"{url_scheme}://{endpoint}", token=token, tls_root_certs=tls_root_certs).close()
                    break
                except tally_client.TallyError:
                    assert process.poll() is None, log_path.read_text()
                    assert time.monotonic() < deadline, "tally local did not answer within 60 s"
                    time.sleep(0.2)
            yield Cluster(endpoint=endpoint, token=token, token_file=token_file, workdir=workdir)
        finally:
            process.terminate()
            process.wait(timeout=30)


@pytest.fixture(scope="session")
def cluster(tmp_path_factory, tpch_data) -> Cluster:
    binary = tally_binary()
    assert binary.exists(), f"{binary} is missing: build it with `cargo build -p tally-client --bin tally`"
    workdir = tmp_path_factory.mktemp("tally")
    with running_cluster(workdir, {table: tpch_data / table for table in TPCH_TABLES}) as running:
        yield running


@pytest.fixture
def tally(cluster):
    with tally_client.connect(cluster.url, token=cluster.token) as connection:
        yield connection
