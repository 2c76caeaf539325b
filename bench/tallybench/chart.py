"""The PNG chart: per query, bars of median wall time (top) and shuffle bytes (bottom)."""

from .report import BYTES_COLUMNS, ENGINES, LABELS, bytes_figure


def draw(results, queries, title, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (times, volumes) = plt.subplots(2, 1, figsize=(13, 9))
    engines = [e for e in ENGINES if e in results]
    _bars(
        times, queries,
        [(LABELS[e], [_value(results, e, q, "median_ms") for q in queries]) for e in engines],
    )
    times.set_ylabel("median wall time (ms, log)")
    times.set_title(title)
    _bars(
        volumes, queries,
        [(label, [bytes_figure(results, label, q) for q in queries])
         for label, engine, _ in BYTES_COLUMNS if engine in results],
    )
    volumes.set_ylabel("shuffle bytes (log; 0 written as 0)")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _value(results, engine, query, field):
    result = results[engine][query]
    return None if result.error else getattr(result, field)


def _bars(axes, queries, series):
    width = 0.8 / max(len(series), 1)
    positive = [v for _, values in series for v in values if v]
    floor = min(positive) / 2 if positive else 1
    for i, (label, values) in enumerate(series):
        xs = [q + (i - (len(series) - 1) / 2) * width for q in range(len(queries))]
        heights = [v if v else 0 for v in values]
        axes.bar(xs, heights, width, label=label)
        for x, v in zip(xs, values):
            if v == 0:
                axes.text(x, floor, "0", ha="center", va="bottom", fontsize=7)
    axes.set_yscale("log")
    axes.set_xticks(range(len(queries)))
    axes.set_xticklabels(queries)
    axes.legend(fontsize=8, ncol=3)
    axes.grid(axis="y", alpha=0.3)
