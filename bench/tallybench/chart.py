"""The PNG chart: per query, bars of median wall time (top) and shuffle bytes (bottom).
Redraw one from a results file: python -m tallybench.chart RESULTS.json OUT.png TITLE"""

import json
import sys

from .report import BYTES_COLUMNS, ENGINES, LABELS, bytes_figure
from .results import Result

# One colour per engine in both panels; Tally's broadcast-free bytes and Spark's bytes
# written in a lighter shade of their engine's colour.
COLORS = {
    "tally": "#1f77b4",
    "tally-naive": "#ff7f0e",
    "datafusion": "#2ca02c",
    "duckdb": "#d62728",
    "spark-local": "#9467bd",
    "spark-cluster": "#8c564b",
    "Tally without broadcasts": "#9ecae1",
    "Spark local-cluster: written": "#c49c94",
}


def draw(results, queries, title, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (times, volumes) = plt.subplots(2, 1, figsize=(13, 9))
    engines = [e for e in ENGINES if e in results]
    _bars(
        times, queries,
        [(LABELS[e], COLORS[e], [_median(results, e, q) for q in queries]) for e in engines],
    )
    times.set_ylabel("median wall time (ms, log)")
    times.set_title(title)
    _bars(
        volumes, queries,
        [(label, COLORS.get(label, COLORS[engine]),
          [bytes_figure(results, label, q) for q in queries])
         for label, engine, _ in BYTES_COLUMNS if engine in results],
    )
    volumes.set_ylabel("shuffle bytes (log; 0 written as 0)")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _median(results, engine, query):
    result = results[engine][query]
    return None if result.error else result.median_ms


def _bars(axes, queries, series):
    width = 0.8 / max(len(series), 1)
    positive = [v for _, _, values in series for v in values if v]
    floor = min(positive) / 2 if positive else 1
    for i, (label, color, values) in enumerate(series):
        xs = [q + (i - (len(series) - 1) / 2) * width for q in range(len(queries))]
        axes.bar(xs, [v or 0 for v in values], width, label=label, color=color)
        for x, v in zip(xs, values):
            if v == 0:
                axes.text(x, floor, "0", ha="center", va="bottom", fontsize=7)
    axes.set_yscale("log")
    if positive:
        # Room above the tallest bar for the legend.
        axes.set_ylim(floor, max(positive) * 30)
    axes.set_xticks(range(len(queries)))
    axes.set_xticklabels(queries)
    axes.legend(fontsize=8, ncol=3, loc="upper left")
    axes.grid(axis="y", alpha=0.3)


def main():
    source, out, title = sys.argv[1:4]
    records = json.loads(open(source).read())
    results = {
        engine: {query: Result.from_json(r) for query, r in queries.items()}
        for engine, queries in records.items()
    }
    queries = list(next(iter(records.values())))
    draw(results, queries, title, out)


if __name__ == "__main__":
    main()
