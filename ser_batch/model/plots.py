"""Training reports as pictures and tables: confusion matrix and learning curves (pure: bytes out, no IO)."""

from __future__ import annotations

import csv
import io
from typing import Any

import numpy as np
from numpy.typing import NDArray


def confusion_png(matrix: NDArray[np.int64], classes: tuple[str, ...], *, title: str) -> bytes:
    """A labelled heat map of a confusion matrix in percent of each true row, as PNG bytes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    totals = matrix.sum(axis=1, keepdims=True)
    percent = np.divide(matrix * 100.0, totals, out=np.zeros(matrix.shape), where=totals > 0)
    side = 2.0 + 0.9 * len(classes)
    figure = Figure(figsize=(side + 1.5, side), dpi=120, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    image = axes.imshow(percent, cmap="Blues", vmin=0.0, vmax=100.0)
    for (row, column), value in np.ndenumerate(percent):
        axes.text(
            column,
            row,
            f"{value:.1f}%\n({matrix[row, column]})",
            ha="center",
            va="center",
            fontsize=8,
            color="white" if value > 55.0 else "black",
        )
    axes.set_xticks(range(len(classes)), labels=list(classes), rotation=45, ha="right")
    axes.set_yticks(range(len(classes)), labels=[f"{c} ({n})" for c, n in zip(classes, totals[:, 0], strict=True)])
    axes.set_xlabel("predicted")
    axes.set_ylabel("true (rows)")
    axes.set_title(title, fontsize=10)
    figure.colorbar(image, ax=axes, label="% of the true class")
    return _png(figure)


def confusion_csv(matrix: NDArray[np.int64], classes: tuple[str, ...]) -> bytes:
    r"""A confusion matrix as CSV: header ``true\predicted,<classes>``, one row of counts per true class."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["true\\predicted", *classes])
    for name, counts in zip(classes, matrix.tolist(), strict=True):
        writer.writerow([name, *counts])
    return buffer.getvalue().encode()


def history_png(history: dict[str, list[float]], *, title: str) -> bytes:
    """Training and validation loss and accuracy per epoch, as PNG bytes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    figure = Figure(figsize=(10, 4), dpi=110, layout="constrained")
    FigureCanvasAgg(figure)
    for position, metric in enumerate(("loss", "accuracy"), start=1):
        axes = figure.add_subplot(1, 2, position)
        for key, label in ((metric, "train"), (f"val_{metric}", "validation")):
            if history.get(key):
                marker = "." if len(history[key]) < 30 else None
                axes.plot(range(1, len(history[key]) + 1), history[key], label=label, marker=marker)
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        if metric == "accuracy":
            axes.set_ylim(0.0, 1.02)
        axes.set_xlabel("epoch")
        axes.set_ylabel(metric)
        axes.grid(alpha=0.3)
        axes.legend()
    figure.suptitle(title)
    return _png(figure)


def _png(figure: Any) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
