"""A connection to a Tally coordinator over Arrow Flight SQL.

Queries go through the ADBC Flight SQL driver: the coordinator runs the statement as a job and
answers with one endpoint per piece of the answer, at the worker that holds it; the pieces are
fetched from the workers in parallel with pyarrow.flight (a thread per worker) and joined in
order. Every endpoint
carries the job id, which `metrics` and `cancel` use through Tally's own Flight actions
(`tally.job`, `tally.cancel`) sent with pyarrow.flight.
"""

from __future__ import annotations

import json
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import adbc_driver_flightsql
import adbc_driver_flightsql.dbapi as flightsql_dbapi
import adbc_driver_manager
import pyarrow
import pyarrow.flight as flight


class TallyError(Exception):
    """A refused or failed request: `code` is the gRPC status name (e.g. INVALID_ARGUMENT for
    the query's own errors, UNAUTHENTICATED for a wrong token), `message` what went wrong."""

    def __init__(self, message: str, code: str = "UNKNOWN"):
        super().__init__(message)
        self.message = message
        self.code = code


# How the ADBC driver words a server's error: "CODE: [FlightSQL] message (Code; Call)".
_ADBC_MESSAGE = re.compile(r"^([A-Z_]+): \[FlightSQL\] (.*?)(?: \(\w+; \w+\))?$", re.S)
# How pyarrow.flight does: "Flight returned ... error, with message: message. gRPC client debug
# context: ...".
_FLIGHT_MESSAGE = re.compile(r"with message: (.*?)(?:\. gRPC client debug context.*)?$", re.S)
_FLIGHT_CODES = [
    (flight.FlightUnauthenticatedError, "UNAUTHENTICATED"),
    (flight.FlightUnavailableError, "UNAVAILABLE"),
    (flight.FlightCancelledError, "CANCELLED"),
    (flight.FlightUnauthorizedError, "PERMISSION_DENIED"),
    # gRPC codes pyarrow raises as its general errors.
    (pyarrow.ArrowKeyError, "NOT_FOUND"),
    (pyarrow.ArrowInvalid, "INVALID_ARGUMENT"),
    (pyarrow.ArrowNotImplementedError, "UNIMPLEMENTED"),
]


def _tally_error(error: Exception) -> TallyError:
    text = str(error).strip()
    match = _ADBC_MESSAGE.match(text)
    if match:
        return TallyError(match.group(2), match.group(1))
    if isinstance(error, (flight.FlightError, pyarrow.ArrowException)):
        message = _FLIGHT_MESSAGE.search(text)
        message = message.group(1) if message else text
        for kind, code in _FLIGHT_CODES:
            if isinstance(error, kind):
                return TallyError(message, code)
        return TallyError(message)
    return TallyError(text)


@dataclass(frozen=True)
class StageMetrics:
    stage_id: int
    output: str
    tasks: int
    output_rows: int
    output_bytes: int
    shuffle_bytes: int
    shuffle_rows: int
    spilled_bytes: int
    elapsed_ms: int
    input_stages: list = field(default_factory=list)
    # Records of a Kafka table skipped as malformed ('on_malformed' 'skip').
    malformed_records: int = 0


@dataclass(frozen=True)
class JobMetrics:
    """A job's state and figures, as `tally sql --metrics-json` reports them."""

    job_id: str
    state: str
    error: Optional[str]
    shuffle_bytes: int
    shuffle_rows: int
    result_rows: int
    result_bytes: int
    elapsed_ms: int
    stages: list

    @property
    def shuffle_bytes_per_stage(self) -> dict:
        return {stage.stage_id: stage.shuffle_bytes for stage in self.stages}

    @classmethod
    def from_json(cls, document: dict) -> "JobMetrics":
        # Figures a newer coordinator adds are ignored rather than refused.
        known = set(StageMetrics.__dataclass_fields__)
        stages = [StageMetrics(**{k: v for k, v in stage.items() if k in known})
                  for stage in document.pop("stages")]
        return cls(stages=stages, **document)


def connect(
    url: str,
    token: Optional[str] = None,
    *,
    tls_root_certs: Optional[bytes] = None,
) -> "Connection":
    """Connects to the coordinator at `url` (`grpc://host:50050`, or `grpc+tls://` with TLS),
    with the cluster's token when it has one. A wrong token or address fails here."""
    return Connection(url, token=token, tls_root_certs=tls_root_certs)


class Connection:
    def __init__(self, url: str, token: Optional[str] = None, tls_root_certs: Optional[bytes] = None):
        self.url = url
        self.last_job_id: Optional[str] = None
        self._headers = [(b"authorization", f"Bearer {token}".encode())] if token else []
        db_kwargs = {}
        if token:
            db_kwargs[adbc_driver_flightsql.DatabaseOptions.AUTHORIZATION_HEADER.value] = f"Bearer {token}"
        if tls_root_certs:
            db_kwargs[adbc_driver_flightsql.DatabaseOptions.TLS_ROOT_CERTS.value] = tls_root_certs.decode()
        self._tls_root_certs = tls_root_certs
        self._flight = flight.FlightClient(url, tls_root_certs=tls_root_certs)
        # Ask once now, so that a wrong token or address fails in connect().
        try:
            list(self._flight.list_actions(options=self._options(timeout=30)))
        except (flight.FlightError, pyarrow.ArrowException) as error:
            self._flight.close()
            raise _tally_error(error) from None
        self._adbc = flightsql_dbapi.connect(url, db_kwargs=db_kwargs, autocommit=True)
        self._running = set()
        self._lock = threading.Lock()

    def _options(self, timeout: Optional[float] = None) -> flight.FlightCallOptions:
        return flight.FlightCallOptions(headers=self._headers, timeout=timeout)

    def __enter__(self) -> "Connection":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._adbc.close()
        self._flight.close()

    def sql(
        self,
        query: str,
        parameters: Optional[Sequence[Any]] = None,
        *,
        pandas: bool = False,
    ):
        """Runs `query` to its end and returns its answer as a `pyarrow.Table` (a pandas
        DataFrame with `pandas=True`). `parameters` fill `$1`, `$2`, ... (or `?` in order).
        The job's id is `last_job_id` afterwards; a failed job raises `TallyError`."""
        table = self._run(query, parameters)
        return table.to_pandas() if pandas else table

    def _run(self, query: str, parameters: Optional[Sequence[Any]]) -> pyarrow.Table:
        cursor = self._adbc.cursor()
        with self._lock:
            self._running.add(cursor)
        try:
            partitions, schema = cursor.adbc_execute_partitions(
                query, parameters=tuple(parameters) if parameters is not None else None
            )
        except adbc_driver_manager.Error as error:
            raise _tally_error(error) from None
        finally:
            with self._lock:
                self._running.discard(cursor)
            cursor.close()
        if not partitions:  # Tally always names at least one endpoint; other servers may not.
            self.last_job_id = None
            return schema.empty_table()
        infos = [flight.FlightInfo.deserialize(partition) for partition in partitions]
        self.last_job_id = infos[0].app_metadata.decode() or None
        # The pieces stream from the workers in parallel, a thread per worker reading its
        # pieces in turn, with pyarrow.flight: one ADBC connection reads one partition at a
        # time (a second read cancels the first).
        by_location = {}
        for index, info in enumerate(infos):
            locations = info.endpoints[0].locations
            location = locations[0].uri.decode() if locations else None
            by_location.setdefault(location, []).append(index)
        pieces = [None] * len(partitions)

        def fetch_all(location, indices):
            client = flight.FlightClient(location, tls_root_certs=self._tls_root_certs) if location else self._flight
            try:
                for index in indices:
                    reader = client.do_get(infos[index].endpoints[0].ticket, options=self._options())
                    pieces[index] = reader.read_all()
            finally:
                if client is not self._flight:
                    client.close()

        try:
            with ThreadPoolExecutor(max_workers=len(by_location)) as pool:
                list(pool.map(fetch_all, by_location.keys(), by_location.values()))
        except (flight.FlightError, pyarrow.ArrowException) as error:
            raise _tally_error(error) from None
        pieces = [piece for piece in pieces if piece.num_rows > 0] or pieces[:1]
        return pyarrow.concat_tables(pieces)

    def metrics(self, job_id: Optional[str] = None) -> JobMetrics:
        """The figures of `job_id` (by default the last job run here): its state, error,
        and bytes shuffled between workers, in all and per stage."""
        job_id = job_id or self.last_job_id
        if not job_id:
            raise TallyError("no job has run on this connection yet", "FAILED_PRECONDITION")
        return JobMetrics.from_json(self._action("tally.job", job_id))

    def cancel(self, job_id: Optional[str] = None) -> None:
        """Cancels the statements this connection is running (from another thread: their calls
        are abandoned and the coordinator cancels their jobs), and the job `job_id` if given."""
        with self._lock:
            running = list(self._running)
        for cursor in running:
            try:
                cursor.adbc_cancel()
            except adbc_driver_manager.Error:
                pass  # It ended meanwhile.
        if job_id:
            self._action("tally.cancel", job_id)

    def tables(self) -> list:
        """The names of the tables the coordinator's catalog holds."""
        objects = self._adbc.adbc_get_objects(depth="tables").read_all().to_pylist()
        return sorted(
            table["table_name"]
            for catalog in objects
            for schema in catalog["catalog_db_schemas"] or []
            for table in schema["db_schema_tables"] or []
        )

    def _action(self, kind: str, body: str) -> dict:
        try:
            results = list(self._flight.do_action(flight.Action(kind, body.encode()), options=self._options()))
        except (flight.FlightError, pyarrow.ArrowException) as error:
            raise _tally_error(error) from None
        return json.loads(results[0].body.to_pybytes())
