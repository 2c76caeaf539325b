"""An example DAG: a TPC-H report on Tally, then a materialized view made and refreshed.

The `tally_default` connection names the coordinator (host, port, the cluster token as its
password). The report's task pushes its job id and the bytes it shuffled to XCom."""

from datetime import datetime

from airflow.sdk import DAG

from tally_client.airflow.operators import TallyRefreshOperator, TallySqlOperator

with DAG(
    dag_id="tally_example",
    start_date=datetime(2026, 1, 1),
    schedule=None,
    catchup=False,
    tags=["tally"],
) as dag:
    revenue_by_nation = TallySqlOperator(
        task_id="revenue_by_nation",
        sql="""
            SELECT n_name, sum(l_extendedprice * (1 - l_discount)) AS revenue
            FROM lineitem
            JOIN orders ON l_orderkey = o_orderkey
            JOIN customer ON o_custkey = c_custkey
            JOIN nation ON c_nationkey = n_nationkey
            GROUP BY n_name
            ORDER BY revenue DESC
        """,
    )
    drop_view = TallySqlOperator(
        task_id="drop_view", sql="DROP MATERIALIZED VIEW IF EXISTS returns_by_flag"
    )
    create_view = TallySqlOperator(
        task_id="create_view",
        sql="""
            CREATE MATERIALIZED VIEW returns_by_flag AS
            SELECT l_returnflag, count(*) AS lines, sum(l_quantity) AS quantity
            FROM lineitem GROUP BY l_returnflag
        """,
    )
    refresh_view = TallyRefreshOperator(task_id="refresh_view", view="returns_by_flag")

    revenue_by_nation >> drop_view >> create_view >> refresh_view
