"""The results file: tables of wall time, shuffle bytes and answers, the ratios, and where
Tally stands against the targets."""

import collections

ENGINES = ["tally", "tally-naive", "datafusion", "duckdb", "spark-local", "spark-cluster"]
LABELS = {
    "tally": "Tally (3 workers)",
    "tally-naive": "Tally naive",
    "datafusion": "DataFusion (1 process)",
    "duckdb": "DuckDB",
    "spark-local": "Spark local[2]",
    "spark-cluster": "Spark local-cluster[3,1,2048]",
}

# Targets from the benchmark issue.
BYTES_TARGET = 0.2
SPARK_TIME_TARGET = 0.3
DATAFUSION_TIME_TARGET = 1.3


def agreement(results, queries):
    """{query: (reference checksum, [engines that disagree])}: the reference is the checksum
    most engines gave (the first engine's on a tie)."""
    verdicts = {}
    for name in queries:
        sums = [(e, r[name].checksum) for e, r in results.items() if not r[name].error]
        if not sums:
            verdicts[name] = (None, [])
            continue
        counts = collections.Counter(c for _, c in sums)
        reference = max(counts, key=lambda c: (counts[c], -[c2 for _, c2 in sums].index(c)))
        verdicts[name] = (reference, [e for e, c in sums if c != reference])
    return verdicts


def ms(value):
    return "-" if value is None else f"{value:,.0f}"


def size(value):
    if value is None:
        return "-"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if value >= scale:
            return f"{value / scale:,.1f} {unit}"
    return f"{value} B"


def ratio(numerator, denominator):
    if numerator is None or denominator is None or denominator == 0:
        return "-"
    return f"{numerator / denominator:.2f}x" if numerator else "0x"


def _get(results, engine, query, field):
    result = results.get(engine, {}).get(query)
    if result is None or result.error:
        return None
    return getattr(result, field)


def time_table(results, queries):
    engines = [e for e in ENGINES if e in results]
    ratios = [
        (e, LABELS[e])
        for e in ("spark-local", "spark-cluster", "tally-naive", "datafusion", "duckdb")
        if e in results and "tally" in results
    ]
    head = ["query"] + [LABELS[e] for e in engines] + [f"Tally / {label}" for _, label in ratios]
    lines = ["| " + " | ".join(head) + " |", "| --- |" + " ---: |" * (len(head) - 1)]
    totals = {e: 0.0 for e in engines}
    for name in queries:
        cells = [name]
        for e in engines:
            value = _get(results, e, name, "median_ms")
            cells.append(ms(value) if value is not None else "failed")
            totals[e] = None if value is None or totals[e] is None else totals[e] + value
        tally = _get(results, "tally", name, "median_ms")
        cells += [ratio(tally, _get(results, e, name, "median_ms")) for e, _ in ratios]
        lines.append("| " + " | ".join(cells) + " |")
    cells = ["**sum**"] + [ms(totals[e]) for e in engines]
    cells += [ratio(totals.get("tally"), totals[e]) for e, _ in ratios]
    lines.append("| " + " | ".join(cells) + " |")
    return lines


def _exchange_bytes(result):
    """Tally's shuffle bytes without its broadcasts: what Spark's shuffle figures cover."""
    if result.shuffle_bytes is None or result.broadcast_bytes is None:
        return None
    return result.shuffle_bytes - result.broadcast_bytes


# (label, engine, figure of a Result) for the bytes table and the chart.
BYTES_COLUMNS = [
    ("Tally (3 workers)", "tally", lambda r: r.shuffle_bytes),
    ("Tally without broadcasts", "tally", _exchange_bytes),
    ("Tally naive", "tally-naive", lambda r: r.shuffle_bytes),
    ("Spark local-cluster: remote read", "spark-cluster", lambda r: r.shuffle_bytes),
    ("Spark local-cluster: written", "spark-cluster", lambda r: r.shuffle_write_bytes),
    ("Spark local[2]: written", "spark-local", lambda r: r.shuffle_write_bytes),
]
# (Tally's figure, the other figure) pairs shown as ratios.
BYTES_RATIOS = [
    ("Tally (3 workers)", "Tally naive"),
    ("Tally (3 workers)", "Spark local-cluster: remote read"),
    ("Tally without broadcasts", "Spark local-cluster: remote read"),
    ("Tally (3 workers)", "Spark local-cluster: written"),
]


def bytes_figure(results, label, query):
    engine, figure = next((e, f) for l, e, f in BYTES_COLUMNS if l == label)
    result = results.get(engine, {}).get(query)
    return None if result is None or result.error else figure(result)


def bytes_table(results, queries):
    columns = [label for label, engine, _ in BYTES_COLUMNS if engine in results]
    ratios = [(a, b) for a, b in BYTES_RATIOS if a in columns and b in columns]
    head = ["query"] + columns + [f"{a} / {b}" for a, b in ratios]
    lines = ["| " + " | ".join(head) + " |", "| --- |" + " ---: |" * (len(head) - 1)]
    for name in queries:
        cells = [name] + [size(bytes_figure(results, c, name)) for c in columns]
        cells += [
            ratio(bytes_figure(results, a, name), bytes_figure(results, b, name))
            for a, b in ratios
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def answers_table(results, queries, verdicts):
    engines = [e for e in ENGINES if e in results]
    head = ["query", "rows", "checksum"] + [LABELS[e] for e in engines]
    lines = ["| " + " | ".join(head) + " |", "| --- | ---: | --- |" + " --- |" * len(engines)]
    for name in queries:
        reference, disagree = verdicts[name]
        rows = next(
            (r[name].rows for r in results.values() if r[name].checksum == reference), 0
        )
        cells = [name, str(rows), f"`{reference}`" if reference else "-"]
        for e in engines:
            result = results[e][name]
            if result.error:
                cells.append("failed: " + result.error.replace("|", "/")[:120])
            elif e in disagree:
                cells.append(f"**MISMATCH** `{result.checksum}` ({result.rows} rows)")
            else:
                cells.append("same")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _ratios(results, queries, tally, other):
    """[(query, ratio)] of two figures, each (engine, Result -> number)."""
    pairs = []
    for name in queries:
        values = []
        for engine, figure in (tally, other):
            result = results.get(engine, {}).get(name)
            values.append(None if result is None or result.error else figure(result))
        if values[0] is None or values[1] is None:
            continue
        if values[1] == 0:
            pairs.append((name, 0.0 if values[0] == 0 else float("inf")))
        else:
            pairs.append((name, values[0] / values[1]))
    return pairs


def _times(r):
    return "infinite (the baseline is 0)" if r == float("inf") else f"{r:.2f}x"


def _verdict(pairs, target, what):
    if not pairs:
        return f"{what}: not measured."
    misses = [(n, r) for n, r in pairs if r > target]
    worst = max(pairs, key=lambda p: p[1])
    text = f"{what}: met on {len(pairs) - len(misses)} of {len(pairs)} queries"
    text += f" (worst {worst[0]}: {_times(worst[1])})"
    if misses:
        text += "; missed on " + ", ".join(f"{n} ({_times(r)})" for n, r in misses)
    return text + "."


def targets(results, queries):
    lines = []
    median = lambda r: r.median_ms
    if "spark-cluster" in results and "tally" in results:
        for tally_label, spark_label in BYTES_RATIOS[1:]:
            tally = next((e, f) for l, e, f in BYTES_COLUMNS if l == tally_label)
            spark = next((e, f) for l, e, f in BYTES_COLUMNS if l == spark_label)
            pairs = _ratios(results, queries, tally, spark)
            what = f"Shuffle bytes <= {BYTES_TARGET}x Spark ({tally_label} / {spark_label})"
            lines.append("- " + _verdict(pairs, BYTES_TARGET, what))
    if "spark-local" in results and "tally" in results:
        pairs = _ratios(results, queries, ("tally", median), ("spark-local", median))
        what = f"Wall time <= {SPARK_TIME_TARGET}x Spark local[2]"
        lines.append("- " + _verdict(pairs, SPARK_TIME_TARGET, what))
    if "datafusion" in results and "tally" in results:
        pairs = _ratios(results, queries, ("tally", median), ("datafusion", median))
        what = f"Wall time <= {DATAFUSION_TIME_TARGET}x single-process DataFusion"
        lines.append("- " + _verdict(pairs, DATAFUSION_TIME_TARGET, what))
    return lines


METHOD = """\
- Every engine reads the same Parquet files written by `tally gen-tpch` ({parts} files per
  large table). `orders_b` and `lineitem_b` are orders and lineitem written by
  `tally gen-tpch --bucket-by ... --buckets {buckets}`: Tally knows their bucketing; DataFusion
  and DuckDB read them as plain Parquet folders; Spark reads **its own bucketBy tables**
  ({buckets} buckets on the same keys, written once by Spark from the same plain orders and
  lineitem files, not timed), so that Spark too can join and aggregate them without a shuffle.
- Wall time: median of the measured runs after the warm-up runs, as the client sees it.
  Tally: the whole `tally sql --coordinator ... --format csv` process against a running
  `tally local --workers {workers}` cluster (start, connect, plan, run, fetch the answer,
  print it). DataFusion (`datafusion-single`, the same DataFusion 55.2 build Tally runs, one
  `SessionContext` with as many partitions as cores), DuckDB and Spark: from the SQL text to
  the answer's rows in the process (Spark: `spark.sql(...).collect()`).
- Shuffle bytes, which figure against which: Tally's `shuffle_bytes` is what one worker
  sent to another between stages (Arrow IPC on the wire after LZ4 compression; the answer
  sent to the client is not counted), broadcast copies of a join's small side included;
  "Tally without broadcasts" leaves out the stages the broadcast rule made. Spark's like
  figure is local-cluster's `shuffleRemoteBytesRead`: bytes an executor fetched from another
  executor (lz4-compressed, Spark's default), counted at every fetch (so it can exceed the
  bytes written). Spark's broadcasts are not shuffle data and Spark reports no wire
  size for them (the BroadcastExchange `data size` metric is the in-memory hash table, e.g.
  32 MiB for one row), so "Tally without broadcasts / Spark remote read" is the like-for-like
  ratio and "Tally / Spark remote read" counts Tally's broadcasts against it. Spark's
  `shuffleWriteBytes` (all shuffle output, read locally or remotely) is shown too; in
  local[2] there is one executor, everything is read locally and only the written figure
  means anything. A query's Spark figures are summed over the completed stages of its last
  run: the jobs of its job group (`<query>#<run>`) plus the jobs submitted while it ran
  (Spark runs broadcast jobs under a group of their own). A top-N answer (`ORDER BY ...
  LIMIT`) is gathered by Spark into the driver as task results (not shuffle); Tally's final
  stage gathers the per-worker top N on a worker, which counts as shuffle bytes.
- Checksum: rows sorted, every number rounded to {precision} decimal places (half to even),
  so decimal/float differences between engines do not count; NULL and '' are the same.
- Spark runs with its defaults (adaptive execution on, 200 shuffle partitions, 10 MB
  broadcast threshold); driver memory 4g in local[2], 2g driver and 2g per executor in
  local-cluster. Tally runs with its defaults (2 hash partitions per worker, LZ4 on the wire)."""
