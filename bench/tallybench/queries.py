"""The query set: TPC-H queries from tests/tpch/ and a join + aggregation on bucketed tables."""

import pathlib

REPO = pathlib.Path(__file__).resolve().parents[2]

TPCH = ["q1", "q3", "q5", "q6", "q10", "q12", "q18"]

# orders_b and lineitem_b are orders and lineitem bucketed alike on the order key, so the
# join and the aggregation (its keys contain the bucket key) need no exchange in an engine
# that knows the bucketing. The answer is the report's top 100, ordered to the last tie.
BUCKETED_NAME = "bucketed"
BUCKETED_SQL = """select
    o_orderkey,
    o_orderdate,
    sum(l_extendedprice) as revenue
from
    orders_b
    join lineitem_b on l_orderkey = o_orderkey
group by
    o_orderkey,
    o_orderdate
order by
    revenue desc,
    o_orderkey
limit 100"""

DESCRIPTIONS = {
    BUCKETED_NAME: "join + aggregation of orders and lineitem bucketed on the order key",
}


def query_set():
    """[(name, sql)] in the order they run and are reported."""
    queries = [(name, (REPO / "tests" / "tpch" / f"{name}.sql").read_text().strip()) for name in TPCH]
    queries.append((BUCKETED_NAME, BUCKETED_SQL))
    return queries
