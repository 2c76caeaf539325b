"""The hook: a `tally` connection (host, port, the cluster token as its password, and
`{"tls": true}` in its extra for TLS) made into a `tally_client.Connection`."""

from __future__ import annotations

from typing import Any, Optional

try:
    from airflow.sdk import BaseHook
except ImportError:  # Airflow before 3.1
    from airflow.hooks.base import BaseHook

import tally_client


class TallyHook(BaseHook):
    conn_name_attr = "tally_conn_id"
    default_conn_name = "tally_default"
    conn_type = "tally"
    hook_name = "Tally"

    def __init__(self, tally_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.tally_conn_id = tally_conn_id

    @classmethod
    def get_ui_field_behaviour(cls) -> dict:
        return {
            "hidden_fields": ["schema", "login"],
            "relabeling": {"host": "Coordinator host", "password": "Cluster token"},
            "placeholders": {"port": "50050", "extra": '{"tls": false}'},
        }

    def url(self) -> str:
        connection = self.get_connection(self.tally_conn_id)
        scheme = "grpc+tls" if connection.extra_dejson.get("tls") else "grpc"
        return f"{scheme}://{connection.host or '127.0.0.1'}:{connection.port or 50050}"

    def get_conn(self) -> tally_client.Connection:
        connection = self.get_connection(self.tally_conn_id)
        return tally_client.connect(self.url(), token=connection.password or None)

    def test_connection(self) -> tuple:
        try:
            with self.get_conn() as tally:
                tally.tables()
            return True, "Connected"
        except Exception as error:  # Airflow shows the message in its UI.
            return False, str(error)

    def run(self, sql: str, parameters: Optional[list] = None):
        """Runs `sql` and returns its answer as a pyarrow Table and the job's metrics."""
        with self.get_conn() as tally:
            table = tally.sql(sql, parameters)
            return table, tally.metrics()
