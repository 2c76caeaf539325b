"""The ad-report tables of the Spark SQL corpus, generated deterministically as Parquet:
`impressions` (one row per ad, day and device, with NULLs where reports meet them) and
`campaigns`. Run with the test venv's Python: gen_data.py OUT_DIR."""

from __future__ import annotations

import datetime as dt
import random
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

COUNTRIES = ["US", "DE", "FR", "JP", "BR", None]
DEVICES = ["mobile", "desktop", "tablet"]
TAGS = ["sports", "news", "music", "games", "travel"]
STATUSES = ["active", "paused", "ended"]


def impressions(rng: random.Random) -> pa.Table:
    rows = []
    start = dt.datetime(2026, 10, 25, 0, 0, 0)
    for i in range(6000):
        day_offset = rng.randrange(14)
        at = start + dt.timedelta(days=day_offset, seconds=rng.randrange(86400))
        impressions = rng.randrange(1, 5000)
        clicks = rng.randrange(0, impressions // 20 + 2)
        rows.append(
            {
                "ad_id": rng.randrange(1, 400),
                "campaign_id": rng.randrange(1, 40),
                "advertiser": f"adv_{rng.randrange(1, 25):02d}",
                "country": rng.choice(COUNTRIES),
                "device": rng.choice(DEVICES),
                "day": at.date(),
                "event_ts": at,
                "event_unix": int(at.replace(tzinfo=dt.timezone.utc).timestamp()),
                "impressions": impressions,
                "clicks": clicks,
                "spend": round(rng.uniform(0.5, 250.0), 4) if rng.random() > 0.02 else None,
                "cost_micros": rng.randrange(0, 10_000_000),
                "tags": rng.sample(TAGS, rng.randrange(0, 4)),
                "url": f"https://shop{rng.randrange(5)}.example/p/{rng.randrange(100)}?src=ad",
            }
        )
    schema = pa.schema(
        [
            ("ad_id", pa.int64()),
            ("campaign_id", pa.int32()),
            ("advertiser", pa.string()),
            ("country", pa.string()),
            ("device", pa.string()),
            ("day", pa.date32()),
            ("event_ts", pa.timestamp("us")),
            ("event_unix", pa.int64()),
            ("impressions", pa.int64()),
            ("clicks", pa.int64()),
            ("spend", pa.float64()),
            ("cost_micros", pa.int64()),
            ("tags", pa.list_(pa.string())),
            ("url", pa.string()),
        ]
    )
    return pa.Table.from_pylist(rows, schema=schema)


def campaigns(rng: random.Random) -> pa.Table:
    rows = []
    for campaign_id in range(1, 40):
        start = dt.date(2026, 9, 1) + dt.timedelta(days=rng.randrange(60))
        rows.append(
            {
                "campaign_id": campaign_id,
                "name": f"Campaign {campaign_id}",
                "advertiser": f"adv_{rng.randrange(1, 25):02d}",
                "budget": float(rng.randrange(1000, 50000)),
                "start_date": start,
                "status": rng.choice(STATUSES) if campaign_id % 7 else None,
            }
        )
    schema = pa.schema(
        [
            ("campaign_id", pa.int32()),
            ("name", pa.string()),
            ("advertiser", pa.string()),
            ("budget", pa.float64()),
            ("start_date", pa.date32()),
            ("status", pa.string()),
        ]
    )
    return pa.Table.from_pylist(rows, schema=schema)


def main(out: Path) -> None:
    rng = random.Random(15)
    for name, table in [("impressions", impressions(rng)), ("campaigns", campaigns(rng))]:
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        # Two files each, so scans have several tasks.
        half = table.num_rows // 2
        pq.write_table(table.slice(0, half), folder / "part-0.parquet")
        pq.write_table(table.slice(half), folder / "part-1.parquet")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
