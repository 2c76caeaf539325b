"""What one engine measured for one query."""

import dataclasses
import statistics


@dataclasses.dataclass
class Result:
    times_ms: list
    rows: int
    checksum: str
    # Bytes sent from one process to another between stages (Tally: worker to worker on the
    # wire; Spark: shuffle bytes an executor fetched from another executor). None: the engine
    # runs in one process.
    shuffle_bytes: int = None
    # Spark only: the bytes its map tasks wrote to shuffle files (read locally or remotely).
    shuffle_write_bytes: int = None
    # Tally only: of shuffle_bytes, those of broadcast stages (the small side of a join
    # fetched by every worker). Spark does not report what its broadcasts send.
    broadcast_bytes: int = None
    detail: dict = dataclasses.field(default_factory=dict)
    error: str = None

    @classmethod
    def failed(cls, error):
        return cls(times_ms=[], rows=0, checksum="", error=error)

    @property
    def median_ms(self):
        return statistics.median(self.times_ms) if self.times_ms else None

    def to_json(self):
        record = dataclasses.asdict(self)
        record["median_ms"] = self.median_ms
        return record

    @classmethod
    def from_json(cls, record):
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in record.items() if k in fields})
