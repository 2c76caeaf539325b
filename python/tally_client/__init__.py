"""Tally's Python client: SQL over Arrow Flight SQL (ADBC), answers as pyarrow Tables."""

from tally_client.client import Connection, JobMetrics, StageMetrics, TallyError, connect

__all__ = ["Connection", "JobMetrics", "StageMetrics", "TallyError", "connect"]
__version__ = "0.1.0"
