"""Operators: run SQL on Tally, and refresh a materialized view.

`TallySqlOperator` pushes the job id and the bytes it shuffled between workers to XCom
(`job_id`, `shuffle_bytes`, `shuffle_bytes_per_stage`), fails the task with the job's own
error, and cancels the job when Airflow kills the task."""

from __future__ import annotations

import threading
from typing import Any, Optional, Sequence

try:
    from airflow.sdk import BaseOperator
except ImportError:  # Airflow 2
    from airflow.models import BaseOperator
from airflow.exceptions import AirflowException

import tally_client
from tally_client.airflow.hooks import TallyHook


class TallySqlOperator(BaseOperator):
    template_fields: Sequence[str] = ("sql", "parameters")
    template_ext: Sequence[str] = (".sql",)
    ui_color = "#c9e4f6"

    def __init__(
        self,
        *,
        sql: str,
        parameters: Optional[list] = None,
        tally_conn_id: str = TallyHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.sql = sql
        self.parameters = parameters
        self.tally_conn_id = tally_conn_id
        self._connection: Optional[tally_client.Connection] = None
        self._lock = threading.Lock()

    def execute(self, context: Any) -> int:
        connection = TallyHook(tally_conn_id=self.tally_conn_id).get_conn()
        with self._lock:
            self._connection = connection
        try:
            self.log.info("Running on Tally at %s: %s", connection.url, self.sql)
            try:
                table = connection.sql(self.sql, self.parameters)
            except tally_client.TallyError as error:
                raise AirflowException(f"Tally job failed ({error.code}): {error.message}") from None
            metrics = connection.metrics()
        finally:
            with self._lock:
                self._connection = None
            connection.close()
        task_instance = context["ti"]
        task_instance.xcom_push(key="job_id", value=metrics.job_id)
        task_instance.xcom_push(key="shuffle_bytes", value=metrics.shuffle_bytes)
        task_instance.xcom_push(
            key="shuffle_bytes_per_stage",
            value={str(stage): size for stage, size in metrics.shuffle_bytes_per_stage.items()},
        )
        self.log.info(
            "Tally job %s: %d rows, %d bytes shuffled", metrics.job_id, table.num_rows, metrics.shuffle_bytes
        )
        return table.num_rows

    def on_kill(self) -> None:
        with self._lock:
            connection = self._connection
        if connection is not None:
            self.log.info("Cancelling the running Tally job")
            connection.cancel()


class TallyRefreshOperator(TallySqlOperator):
    """Refreshes a materialized view (`REFRESH MATERIALIZED VIEW name`)."""

    template_fields: Sequence[str] = ("view",)

    def __init__(self, *, view: str, **kwargs: Any) -> None:
        super().__init__(sql=f"REFRESH MATERIALIZED VIEW {view}", **kwargs)
        self.view = view

    def execute(self, context: Any) -> int:
        self.sql = f"REFRESH MATERIALIZED VIEW {self.view}"
        return super().execute(context)
