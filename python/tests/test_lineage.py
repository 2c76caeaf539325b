"""OpenLineage events of `tally sql --openlineage-url file:PATH`, checked against the
OpenLineage spec as openlineage-python models it: each event is built into the client's
RunEvent classes field by field (unknown fields, missing required ones, a malformed time,
run id or URL fail), serializes back to the same JSON, and carries the column lineage of a
join + aggregation."""

from __future__ import annotations

import enum
import json
import subprocess
import time
import types
import typing

import attr
import pytest
from openlineage.client import event_v2
from openlineage.client.generated import (
    column_lineage_dataset,
    error_message_run,
    job_type_job,
    processing_engine_run,
    schema_dataset,
    sql_job,
)
from openlineage.client.generated.base import BaseFacet
from openlineage.client.serde import Serde

from conftest import running_cluster

# The facet class of each facet name Tally sends.
FACETS = {
    "schema": schema_dataset.SchemaDatasetFacet,
    "columnLineage": column_lineage_dataset.ColumnLineageDatasetFacet,
    "sql": sql_job.SQLJobFacet,
    "jobType": job_type_job.JobTypeJobFacet,
    "errorMessage": error_message_run.ErrorMessageRunFacet,
    "processing_engine": processing_engine_run.ProcessingEngineRunFacet,
}


def build(kind, value):
    """`value` (parsed JSON) as an instance of `kind`, an openlineage-python type."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        present = [a for a in args if a is not type(None)]
        return None if value is None else build(present[0], value)
    if origin is list:
        assert isinstance(value, list), value
        return [build(args[0], item) for item in value]
    if origin is dict:
        assert isinstance(value, dict), value
        if isinstance(args[1], type) and issubclass(args[1], BaseFacet):
            assert set(value) <= set(FACETS), f"unknown facets {set(value) - set(FACETS)}"
            return {name: build(FACETS[name], facet) for name, facet in value.items()}
        return {key: build(args[1], item) for key, item in value.items()}
    if attr.has(kind):
        attr.resolve_types(kind)
        fields = {field.alias: field for field in attr.fields(kind)}
        unknown = {key.lstrip("_") for key in value} - set(fields)
        assert not unknown, f"{kind.__name__} has no fields {unknown}"
        given = {key.lstrip("_"): item for key, item in value.items()}
        built = kind(**{key: build(fields[key].type, item) for key, item in given.items() if fields[key].init})
        # Fields the class sets itself (a facet's `_schemaURL`) must be what Tally sent.
        for key, item in given.items():
            if not fields[key].init:
                assert getattr(built, fields[key].name) == item, f"{kind.__name__}.{key}: {item!r}"
        return built
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        return kind(value)
    if kind is typing.Any:
        return value
    assert isinstance(value, kind), f"{value!r} is not {kind}"
    return value


def same_json(sent, modelled, path="event"):
    """Every field Tally sent is in the model's serialization, with the same value."""
    if isinstance(sent, dict):
        assert isinstance(modelled, dict), path
        for key, value in sent.items():
            assert key in modelled, f"{path}.{key} lost by the model"
            same_json(value, modelled[key], f"{path}.{key}")
    elif isinstance(sent, list):
        assert len(sent) == len(modelled), path
        for i, (a, b) in enumerate(zip(sent, modelled)):
            same_json(a, b, f"{path}[{i}]")
    else:
        assert sent == modelled, f"{path}: {sent!r} != {modelled!r}"


def sent_events(path, count):
    """The events in `path` once there are `count` (a run's end is sent after the job)."""
    deadline = time.monotonic() + 10
    while True:
        lines = path.read_text().splitlines() if path.exists() else []
        if len(lines) >= count or time.monotonic() > deadline:
            return [json.loads(line) for line in lines]
        time.sleep(0.1)


def test_events_follow_the_openlineage_model_with_column_lineage(tpch_data, tmp_path):
    events = tmp_path / "lineage.jsonl"
    lineage_args = ["--data-root", str(tpch_data), "--openlineage-url", f"file:{events}",
                    "--openlineage-namespace", "reports"]
    tables = {"orders": tpch_data / "orders", "customer": tpch_data / "customer"}
    with running_cluster(tmp_path, tables, lineage_args) as cluster:
        cluster.tally(
            "sql", "--quiet", "-e",
            "CREATE TABLE segment_revenue AS SELECT c.c_mktsegment AS segment, "
            "sum(o.o_totalprice) AS revenue, max(o.o_orderdate) AS last_order "
            "FROM orders o JOIN customer c ON o.o_custkey = c.c_custkey GROUP BY c.c_mktsegment",
        )
        # Refused before any job runs: no run, no event.
        with pytest.raises(subprocess.CalledProcessError) as refused:
            cluster.tally("sql", "-e", "CREATE TABLE segment_revenue AS SELECT 1 AS a")
        assert "already exists" in refused.value.stderr
        # A job that fails while it runs: a partition value that cannot name a folder.
        cluster.tally("sql", "--set", "tally.sql_dialect=spark", "-e",
                      "CREATE TABLE by_status (k BIGINT, s STRING) USING parquet PARTITIONED BY (s)")
        with pytest.raises(subprocess.CalledProcessError):
            cluster.tally("sql", "-e",
                          "INSERT INTO by_status SELECT o_orderkey, concat('a/', o_orderstatus) FROM orders")
        sent = sent_events(events, 4)

    assert [e["eventType"] for e in sent] == ["START", "COMPLETE", "START", "FAIL"]
    for event in sent:
        modelled = build(event_v2.RunEvent, event)
        same_json(event, json.loads(Serde.to_json(modelled)))
    start, complete, _, fail = sent
    assert start["run"]["runId"] == complete["run"]["runId"] != fail["run"]["runId"]
    assert complete["job"] == start["job"]
    assert complete["job"]["namespace"] == "reports"
    assert complete["job"]["name"] == "create_table.segment_revenue"
    assert sorted(i["name"] for i in complete["inputs"]) == [
        str(tpch_data / "customer"), str(tpch_data / "orders")]
    assert complete["outputs"][0]["name"] == str(tmp_path / "tables" / "segment_revenue")

    lineage = {
        column: sorted(
            (f["name"].rsplit("/", 1)[1], f["field"], f["transformations"][0]["subtype"])
            for f in sources["inputFields"])
        for column, sources in complete["outputs"][0]["facets"]["columnLineage"]["fields"].items()
    }
    assert lineage == {
        "segment": [("customer", "c_mktsegment", "IDENTITY")],
        "revenue": [("orders", "o_totalprice", "AGGREGATION")],
        "last_order": [("orders", "o_orderdate", "AGGREGATION")],
    }
    assert "cannot name a folder" in fail["run"]["facets"]["errorMessage"]["message"]


@pytest.mark.parametrize("broken, why", [
    ({"eventTime": "yesterday"}, "eventTime"),
    ({"run": {"runId": "not-a-uuid"}}, "runId"),
    ({"job": {"namespace": "reports", "name": "x", "extra": 1}}, "no fields"),
])
def test_the_model_refuses_what_the_spec_refuses(broken, why):
    """The check above can fail: malformed events do not build."""
    event = {
        "eventType": "START", "eventTime": "2026-12-03T18:00:00.000Z",
        "run": {"runId": "0190e5b4-6f7d-7c3e-9a1b-2f4c5d6e7f80"},
        "job": {"namespace": "reports", "name": "x"},
        "producer": "https://github.com/tally-engine/tally",
        "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
    }
    event.update(broken)
    with pytest.raises((ValueError, AssertionError, TypeError)) as raised:
        build(event_v2.RunEvent, event)
    assert why in str(raised.value) or raised.type is ValueError
