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


def bytes_table(results, queries):
    columns = [
        ("Tally (3 workers)", "tally", "shuffle_bytes"),
        ("Tally naive", "tally-naive", "shuffle_bytes"),
        ("Spark local-cluster: remote read", "spark-cluster", "shuffle_bytes"),
        ("Spark local-cluster: written", "spark-cluster", "shuffle_write_bytes"),
        ("Spark local[2]: written", "spark-local", "shuffle_write_bytes"),
    ]
    columns = [c for c in columns if c[1] in results]
    ratios = [c for c in columns[1:] if "tally" in results]
    head = ["query"] + [c[0] for c in columns] + [f"Tally / {c[0]}" for c in ratios]
    lines = ["| " + " | ".join(head) + " |", "| --- |" + " ---: |" * (len(head) - 1)]
    for name in queries:
        tally = _get(results, "tally", name, "shuffle_bytes")
        cells = [name] + [size(_get(results, e, name, f)) for _, e, f in columns]
        cells += [ratio(tally, _get(results, e, name, f)) for _, e, f in ratios]
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


def _ratios(results, queries, engine, field, baseline_field=None):
    pairs = []
    for name in queries:
        tally = _get(results, "tally", name, field)
        other = _get(results, engine, name, baseline_field or field)
        if tally is not None and other:
            pairs.append((name, tally / other))
    return pairs


def _verdict(pairs, target, what):
    if not pairs:
        return f"{what}: not measured."
    misses = [(n, r) for n, r in pairs if r > target]
    worst = max(pairs, key=lambda p: p[1])
    text = f"{what}: met on {len(pairs) - len(misses)} of {len(pairs)} queries"
    text += f" (worst {worst[0]} at {worst[1]:.2f}x)"
    if misses:
        text += "; missed on " + ", ".join(f"{n} ({r:.2f}x)" for n, r in misses)
    return text + "."


def targets(results, queries):
    lines = []
    if "spark-cluster" in results:
        pairs = _ratios(results, queries, "spark-cluster", "shuffle_bytes")
        lines.append(
            "- " + _verdict(pairs, BYTES_TARGET, f"Shuffle bytes <= {BYTES_TARGET}x Spark "
                            "(Tally between workers / Spark local-cluster remote read)")
        )
        pairs = _ratios(results, queries, "spark-cluster", "shuffle_bytes", "shuffle_write_bytes")
        lines.append(
            "- " + _verdict(pairs, BYTES_TARGET, f"Shuffle bytes <= {BYTES_TARGET}x Spark "
                            "(Tally between workers / Spark local-cluster shuffle written)")
        )
    if "spark-local" in results:
        pairs = _ratios(results, queries, "spark-local", "median_ms")
        lines.append(
            "- " + _verdict(pairs, SPARK_TIME_TARGET,
                            f"Wall time <= {SPARK_TIME_TARGET}x Spark local[2]")
        )
    if "datafusion" in results:
        pairs = _ratios(results, queries, "datafusion", "median_ms")
        lines.append(
            "- " + _verdict(pairs, DATAFUSION_TIME_TARGET,
                            f"Wall time <= {DATAFUSION_TIME_TARGET}x single-process DataFusion")
        )
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
- Shuffle bytes compared like for like: Tally's `shuffle_bytes` (bytes one worker sent to
  another between stages, Arrow IPC on the wire after LZ4 compression, broadcast copies
  included; the answer sent to the client is not counted) against Spark local-cluster's
  `shuffleRemoteBytesRead` (bytes an executor fetched from another executor; lz4 shuffle
  compression, Spark's default; broadcasts are not shuffle data in Spark and are not
  counted). Spark's `shuffleWriteBytes` (all shuffle output, read locally or remotely) is
  shown too; in local[2] there is a single executor, so everything is read locally and only
  the written figure means anything. Spark's figures are the sum over the completed stages
  of the query's last run: the jobs of its job group plus the jobs submitted while it ran.
- Checksum: rows sorted, every number rounded to {precision} decimal places (half to even),
  so decimal/float differences between engines do not count; NULL and '' are the same.
- Spark runs with its defaults (adaptive execution on, 200 shuffle partitions, 10 MB
  broadcast threshold); driver memory 4g in local[2], 2g driver and 2g per executor in
  local-cluster. Tally runs with its defaults (2 hash partitions per worker, LZ4 on the wire)."""
