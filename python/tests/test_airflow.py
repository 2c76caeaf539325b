"""The Airflow provider against a real cluster: the example DAG runs under `airflow dags test`
and its XCom holds each job's id and shuffle bytes; the SQL operator fails with the job's own
error and cancels its job when Airflow kills the task; the provider is registered."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("airflow")

from airflow.exceptions import AirflowException  # noqa: E402

import tally_client  # noqa: E402
from conftest import REPO  # noqa: E402
from tally_client.airflow.hooks import TallyHook  # noqa: E402
from tally_client.airflow.operators import TallySqlOperator  # noqa: E402

AIRFLOW = Path(sys.executable).parent / "airflow"


def airflow_env(cluster, home: Path) -> dict:
    connection = {"conn_type": "tally", "host": "127.0.0.1", "port": int(cluster.endpoint.rsplit(":", 1)[1])}
    connection["password"] = cluster.token
    return {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "python" / "example_dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "false",
        "AIRFLOW_CONN_TALLY_DEFAULT": json.dumps(connection),
    }


def airflow(env: dict, *args: str) -> subprocess.CompletedProcess:
    result = subprocess.run([str(AIRFLOW), *args], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"airflow {' '.join(args)}:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return result


def test_the_provider_is_registered_with_its_connection_type(cluster, tmp_path):
    env = airflow_env(cluster, tmp_path)
    info = airflow(env, "providers", "get", "tally-client", "--output", "json").stdout
    assert "tally-client" in info
    hooks = airflow(env, "providers", "hooks", "--output", "json").stdout
    assert "tally_client.airflow.hooks.TallyHook" in hooks


def test_the_example_dag_runs_and_its_xcom_holds_the_shuffle_bytes(cluster, tmp_path):
    env = airflow_env(cluster, tmp_path)
    airflow(env, "db", "migrate")
    airflow(env, "dags", "test", "tally_example")

    with sqlite3.connect(tmp_path / "airflow.db") as db:
        rows = db.execute("SELECT task_id, key, value FROM xcom WHERE dag_id = 'tally_example'").fetchall()
    # The metadata database's JSON column reads back as text or as a number.
    xcom = {(task, key): json.loads(value) if isinstance(value, str) else value for task, key, value in rows}
    assert {task for task, _ in xcom} == {"revenue_by_nation", "drop_view", "create_view", "refresh_view"}
    job_id = xcom[("revenue_by_nation", "job_id")]
    shuffle_bytes = xcom[("revenue_by_nation", "shuffle_bytes")]
    per_stage = xcom[("revenue_by_nation", "shuffle_bytes_per_stage")]
    # The report joins four tables: its stages shuffle, and the figures are the job's own.
    assert shuffle_bytes > 0
    assert shuffle_bytes == sum(per_stage.values())
    with tally_client.connect(cluster.url, token=cluster.token) as tally:
        metrics = tally.metrics(job_id)
        assert metrics.state == "SUCCEEDED"
        assert metrics.shuffle_bytes == shuffle_bytes
        assert xcom[("revenue_by_nation", "return_value")] == 25
        # The view the DAG made and refreshed answers.
        assert tally.sql("SELECT sum(lines) AS lines FROM returns_by_flag").column(0)[0].as_py() > 0


class FakeTaskInstance:
    def __init__(self):
        self.pushed = {}

    def xcom_push(self, key, value):
        self.pushed[key] = value


@pytest.fixture
def tally_connection(cluster, monkeypatch):
    try:
        from airflow.sdk import Connection
    except ImportError:
        from airflow.models import Connection
    host, port = cluster.endpoint.rsplit(":", 1)
    connection = Connection(conn_id="tally_default", conn_type="tally", host=host, port=int(port), password=cluster.token)
    monkeypatch.setattr(TallyHook, "get_connection", classmethod(lambda cls, conn_id: connection))


def test_the_sql_operator_fails_with_the_jobs_error(tally_connection):
    operator = TallySqlOperator(task_id="bad", sql="SELECT * FROM nowhere")
    with pytest.raises(AirflowException) as failure:
        operator.execute({"ti": FakeTaskInstance()})
    assert "INVALID_ARGUMENT" in str(failure.value)
    assert "table nowhere not found" in str(failure.value)


def test_killing_the_sql_operator_cancels_its_job(cluster, tally_connection):
    sql = "SELECT count(*) FROM lineitem a, lineitem b WHERE a.l_orderkey > b.l_orderkey"
    operator = TallySqlOperator(task_id="slow", sql=sql)
    outcome = {}

    def run():
        try:
            operator.execute({"ti": FakeTaskInstance()})
        except AirflowException as error:
            outcome["error"] = str(error)

    thread = threading.Thread(target=run)
    thread.start()
    time.sleep(1.5)
    operator.on_kill()
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert "CANCELLED" in outcome.get("error", ""), outcome
    deadline = time.monotonic() + 10
    while True:
        jobs = [line for line in cluster.tally("jobs").stdout.splitlines() if "l_orderkey > b.l_orderkey" in line]
        if jobs and all("CANCELLED" in line for line in jobs):
            break
        assert time.monotonic() < deadline, jobs
        time.sleep(0.2)
