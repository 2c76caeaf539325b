"""The Python client against a real cluster: answers as `tally sql` gives them, parameters,
job ids and metrics, errors with their message, a wrong token, cancelling."""

from __future__ import annotations

import decimal
import io
import threading
import time

import pyarrow
import pyarrow.compute
import pyarrow.csv
import pytest

import tally_client
from conftest import REPO

QUERIES = ["q1", "q3", "q5", "q6", "q10", "q12", "q18"]


def normalized(table: pyarrow.Table) -> list:
    """Rows with numbers as floats rounded to 6 places, everything else as text: what a CSV
    and an Arrow answer of the same job must agree on."""

    def cell(value):
        if isinstance(value, bool) or value is None:
            return value
        if isinstance(value, (int, float, decimal.Decimal)):
            return round(float(value), 6)
        return str(value)

    return [tuple(cell(v) for v in row.values()) for row in table.to_pylist()]


@pytest.mark.parametrize("name", QUERIES)
def test_tpch_answers_equal_tally_sql_csv(cluster, tally, name):
    sql = (REPO / "tests" / "tpch" / f"{name}.sql").read_text()
    answer = tally.sql(sql)
    csv = cluster.tally("sql", "--format", "csv", "--quiet", "-e", sql).stdout
    expected = pyarrow.csv.read_csv(io.BytesIO(csv.encode()))
    assert answer.column_names == expected.column_names
    assert answer.num_rows == expected.num_rows > 0
    assert normalized(answer) == normalized(expected)


def test_pandas_on_request(tally):
    frame = tally.sql("SELECT n_name FROM nation WHERE n_nationkey < 3 ORDER BY n_nationkey", pandas=True)
    assert list(frame["n_name"]) == ["ALGERIA", "ARGENTINA", "BRAZIL"]


def test_parameters_bind_numbered_and_positional_placeholders(tally):
    numbered = tally.sql(
        "SELECT n_name FROM nation WHERE n_regionkey = $1 AND n_name <> $2 ORDER BY n_name", [1, "BRAZIL"]
    )
    assert numbered.column("n_name").to_pylist() == ["ARGENTINA", "CANADA", "PERU", "UNITED STATES"]
    positional = tally.sql("SELECT count(*) AS n FROM orders WHERE o_orderdate < ?", ["1993-01-01"])
    expected = tally.sql("SELECT count(*) AS n FROM orders WHERE o_orderdate < DATE '1993-01-01'")
    assert positional.column("n").to_pylist() == expected.column("n").to_pylist()
    assert positional.column("n")[0].as_py() > 0


def test_job_id_and_shuffle_bytes_per_stage_match_the_job_listing(cluster, tally):
    tally.sql("SELECT o_orderpriority, count(*) FROM orders JOIN lineitem ON o_orderkey = l_orderkey GROUP BY 1")
    metrics = tally.metrics()
    assert metrics.job_id == tally.last_job_id
    assert metrics.state == "SUCCEEDED"
    assert metrics.shuffle_bytes > 0
    assert metrics.shuffle_bytes == sum(metrics.shuffle_bytes_per_stage.values())
    assert len(metrics.stages) >= 2
    listing = cluster.tally("jobs").stdout
    assert metrics.job_id in listing


def test_bad_sql_and_unknown_tables_fail_with_the_message(tally):
    with pytest.raises(tally_client.TallyError) as bad:
        tally.sql("SELEC 1")
    assert bad.value.code == "INVALID_ARGUMENT"
    assert "Expected: an SQL statement, found: SELEC" in bad.value.message
    with pytest.raises(tally_client.TallyError) as unknown:
        tally.sql("SELECT * FROM nowhere")
    assert unknown.value.message.startswith("table nowhere not found")


def test_a_wrong_or_missing_token_is_refused(cluster):
    with pytest.raises(tally_client.TallyError) as wrong:
        tally_client.connect(cluster.url, token="not-the-cluster-token")
    assert wrong.value.code == "UNAUTHENTICATED"
    assert "wrong cluster token" in wrong.value.message
    with pytest.raises(tally_client.TallyError) as missing:
        tally_client.connect(cluster.url)
    assert "missing cluster token" in missing.value.message


def test_tables_lists_the_catalog(tally):
    assert {"lineitem", "orders", "nation"} <= set(tally.tables())


SLOW = "SELECT count(*) FROM lineitem a, lineitem b WHERE a.l_orderkey < b.l_orderkey"


def test_cancel_from_another_thread_cancels_the_running_job(cluster, tally):
    outcome = {}

    def run():
        try:
            tally.sql(SLOW)
            outcome["finished"] = True
        except tally_client.TallyError as error:
            outcome["error"] = error

    thread = threading.Thread(target=run)
    thread.start()
    time.sleep(1.5)
    tally.cancel()
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert "error" in outcome, outcome
    # The job itself ended as cancelled on the cluster.
    deadline = time.monotonic() + 10
    while True:
        jobs = [line for line in cluster.tally("jobs").stdout.splitlines() if "l_orderkey < b.l_orderkey" in line]
        if jobs and all("CANCELLED" in line for line in jobs):
            break
        assert time.monotonic() < deadline, jobs
        time.sleep(0.2)


def test_cancel_by_job_id(tally):
    tally.sql("SELECT 1")
    job_id = tally.last_job_id
    tally.cancel(job_id)  # An ended job stays as it ended.
    assert tally.metrics(job_id).state == "SUCCEEDED"
    with pytest.raises(tally_client.TallyError) as unknown:
        tally.metrics("nosuchjob")
    assert unknown.value.code == "NOT_FOUND"


def test_a_user_name_with_the_token_as_password_logs_in_as_bi_tools_do(cluster):
    """JDBC/ODBC-style login: ADBC's username/password make a Basic handshake; the answer's
    Bearer header then goes to the coordinator and to the workers."""
    import adbc_driver_flightsql.dbapi as flightsql_dbapi
    import adbc_driver_manager

    login = {"username": "analyst", "password": cluster.token}
    with flightsql_dbapi.connect(cluster.url, db_kwargs=login, autocommit=True) as connection:
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) AS n FROM orders")
            assert cursor.fetch_arrow_table().column("n").to_pylist() == [15000]
    wrong = {"username": "analyst", "password": "not-the-cluster-token"}
    with pytest.raises(adbc_driver_manager.Error, match="wrong cluster token"):
        flightsql_dbapi.connect(cluster.url, db_kwargs=wrong, autocommit=True)


def test_an_answer_in_pieces_on_several_workers_arrives_whole_and_in_order(cluster, tally):
    import adbc_driver_flightsql.dbapi as flightsql_dbapi
    import pyarrow.flight as flight

    sql = "SELECT l_orderkey, l_linenumber FROM lineitem"
    login = {"adbc.flight.sql.authorization_header": f"Bearer {cluster.token}"}
    with flightsql_dbapi.connect(cluster.url, db_kwargs=login, autocommit=True) as connection:
        with connection.cursor() as cursor:
            partitions, _ = cursor.adbc_execute_partitions(sql)
    locations = {flight.FlightInfo.deserialize(p).endpoints[0].locations[0].uri for p in partitions}
    assert len(partitions) > 1 and len(locations) > 1, locations

    answer = tally.sql(sql)
    totals = tally.sql("SELECT count(*) AS n, sum(l_orderkey) AS s FROM lineitem").to_pylist()[0]
    assert answer.num_rows == totals["n"]
    assert pyarrow.compute.sum(answer.column("l_orderkey")).as_py() == totals["s"]
    ordered = tally.sql(sql + " ORDER BY l_orderkey, l_linenumber")
    keys = ordered.column("l_orderkey").to_pylist()
    assert keys == sorted(keys)
