"""Curves of a finished (or interrupted) run: loss and metrics per epoch, train and
validation, from history.csv; and, when the run recorded them (weight_history callback),
weight trajectories against their reference values (the "basic training loops" guide's
"weights vs true weight" figure).

With matplotlib (the optional `plot` extra, imported lazily, Agg backend, no pyplot state)
the figure is written as a PNG; in the terminal (`--terminal`, or when matplotlib is
missing and no --out was asked for) the same panels are drawn by plotext.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainctl.errors import ArtifactError, TrainctlError
from trainctl.runs.files import WEIGHT_HISTORY_FILE

PLOT_FILE = "plot.png"
MAX_ELEMENTS_PER_WEIGHT = 6  # a kernel has many values; its first few show the trend
MARKERS = "*o+x#@%&"  # one per series in a text chart, in legend order
INSTALL_COMMAND = "pip install 'trainctl[plot]'"  # the extra that brings matplotlib
INSTALL_HINT = f"matplotlib is not installed ({INSTALL_COMMAND}); drawing in the terminal instead"


@dataclass
class Series:
    name: str
    x: list[float]
    y: list[float]


@dataclass
class Panel:
    title: str
    series: list[Series]
    references: list[tuple[str, float]] = field(default_factory=list)  # horizontal lines
    xlabel: str = "epoch"
    ylabel: str = ""  # default: the title (the logged quantity)


# -- reading the run ---------------------------------------------------------------------
def _history_panels(rows: list[dict[str, Any]], skip: set[str]) -> list[Panel]:
    """One panel per logged quantity: `loss` with `val_loss`, `acc` with `val_acc`, ..."""
    columns: list[str] = []
    for row in rows:
        for key in row:
            if key != "epoch" and key not in columns and key not in skip:
                columns.append(key)
    bases: list[str] = []
    for key in columns:
        base = key[4:] if key.startswith("val_") and key[4:] in columns else key
        if base not in bases:
            bases.append(base)
    order = {name: index for index, name in enumerate(bases)}
    bases.sort(key=lambda name: (name != "loss", order[name]))  # loss first, then as logged
    panels = []
    for base in bases:
        series = []
        for key in (base, f"val_{base}"):
            if key not in columns:
                continue
            points = [(float(row["epoch"]), float(row[key])) for row in rows if key in row]
            series.append(Series(key, [p[0] for p in points], [p[1] for p in points]))
        panels.append(Panel(base, series))
    return panels


def _read_weight_history(path: Path) -> dict[str, Any] | None:
    from trainctl.runs.atomic import read_json

    if not path.exists():
        return None
    data = read_json(path)
    epochs = data.get("epochs") if isinstance(data, dict) else None
    weights = data.get("weights") if isinstance(data, dict) else None
    reference = data.get("reference", {}) if isinstance(data, dict) else None
    if not isinstance(epochs, list) or not isinstance(weights, dict) or not isinstance(reference, dict):
        raise ArtifactError(f"{path}: expected {{\"epochs\": [...], \"weights\": {{name: [[...], ...]}}, "
                            "\"reference\": {name: value}}")
    for name, per_epoch in weights.items():
        if not isinstance(per_epoch, list) or len(per_epoch) != len(epochs) or \
                not all(isinstance(values, list) and values for values in per_epoch):
            raise ArtifactError(f"{path}: weights.{name} must hold one non-empty list of values "
                                f"per epoch ({len(epochs)} epochs)")
    return data


def _weight_panel(data: dict[str, Any]) -> Panel | None:
    epochs = [float(e) for e in data["epochs"]]
    series: list[Series] = []
    for name, per_epoch in data["weights"].items():
        count = min(len(per_epoch[0]), MAX_ELEMENTS_PER_WEIGHT) if per_epoch else 0
        for index in range(count):
            label = name if len(per_epoch[0]) == 1 else f"{name}[{index}]"
            series.append(Series(label, epochs, [float(values[index]) for values in per_epoch]))
    references = [(f"{name} (reference)", float(value)) for name, value in data.get("reference", {}).items()]
    if not series:
        return None
    return Panel("weights vs reference" if references else "weights", series, references, ylabel="value")


def collect_panels(run_dir: Path) -> list[Panel]:
    """The run's panels; TrainctlError when there is nothing to draw yet."""
    from trainctl.runs.rundir import RunDir

    run = RunDir.open(run_dir, require_weights=False)
    rows = run.read_history()
    if not rows:
        raise TrainctlError(f"{run_dir}: no training history to plot (history.csv is missing or empty; "
                            "the run has not finished an epoch)")
    weight_data = _read_weight_history(Path(run_dir) / WEIGHT_HISTORY_FILE)
    skip = set(weight_data["weights"]) if weight_data else set()
    panels = _history_panels(rows, skip)
    if weight_data:
        panel = _weight_panel(weight_data)
        if panel is not None:
            panels.append(panel)
    return panels


# -- the public entry point ---------------------------------------------------------------
def _load_matplotlib() -> tuple[Any, Any] | None:
    """(Figure, FigureCanvasAgg), or None when matplotlib is not installed."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return None
    return Figure, FigureCanvasAgg


def plot_run(run_dir: Path, out: Path | None = None, terminal: bool = False, *, width: int = 60,
             height: int = 12, color: bool = False) -> str:
    """Draw the run's curves. Writes a PNG (default RUN_DIR/plot.png) and returns a line
    saying where; with `terminal=True`, or without matplotlib and no `out`, returns the text
    charts (`width` x `height` cells of plot area per panel) instead. A PNG asked for by
    name (`out`) without matplotlib is an error that says how to install it."""
    run_dir = Path(run_dir)
    panels = collect_panels(run_dir)
    if terminal and out is not None:
        raise TrainctlError("--terminal draws in the terminal; --out writes a PNG: give one of them")
    matplotlib = None if terminal else _load_matplotlib()
    if matplotlib is None and out is not None:
        raise TrainctlError(f"--out {out}: writing a PNG needs matplotlib, which is not installed; "
                            f"install it with: {INSTALL_COMMAND}  (or draw in the terminal with --terminal)")
    if matplotlib is None:
        text = render_panels_text(panels, width=width, height=height, color=color)
        return text if terminal else f"{INSTALL_HINT}\n{text}"
    path = Path(out) if out is not None else run_dir / PLOT_FILE
    write_png(panels, path, title=f"{run_dir.resolve().parent.name}/{run_dir.name}", matplotlib=matplotlib)
    return f"plot written to {path}"


# -- PNG ----------------------------------------------------------------------------------
def write_png(panels: list[Panel], path: Path, *, title: str = "", matplotlib: Any = None) -> None:
    """Render `panels` in a grid (two columns) and write the PNG atomically."""
    from trainctl.runs.atomic import atomic_write_bytes

    figure = build_figure(panels, title=title, matplotlib=matplotlib)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    atomic_write_bytes(path, buffer.getvalue())


def build_figure(panels: list[Panel], *, title: str = "", matplotlib: Any = None):
    """The matplotlib Figure of `panels`: one axes per panel, titled and labelled on both axes."""
    Figure, FigureCanvasAgg = matplotlib or _load_matplotlib()
    columns = 1 if len(panels) == 1 else 2
    rows = math.ceil(len(panels) / columns)
    figure = Figure(figsize=(6.4 * columns, 4.0 * rows), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(rows, columns, squeeze=False)
    for index, panel in enumerate(panels):
        ax = axes[index // columns][index % columns]
        colors = {}
        for series in panel.series:
            few = len(series.x) <= 30
            y = [v if math.isfinite(v) else math.nan for v in series.y]  # a gap, not an axis blown to inf
            (line,) = ax.plot(series.x, y, label=series.name, marker="o" if few else None,
                              markersize=3, linewidth=1.5)
            colors[series.name] = line.get_color()
        for name, value in panel.references:
            weight = name.removesuffix(" (reference)")
            ax.axhline(value, linestyle="--", linewidth=1.2, color=colors.get(weight, "0.3"), label=name)
        ax.set_title(panel.title)
        ax.set_xlabel(panel.xlabel)
        ax.set_ylabel(panel.ylabel or panel.title)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
        if all(float(x).is_integer() for s in panel.series for x in s.x):
            ax.xaxis.get_major_locator().set_params(integer=True)
    for index in range(len(panels), rows * columns):
        axes[index // columns][index % columns].set_visible(False)
    if title:
        figure.suptitle(title)
    return figure


def write_report_png(report: Any, path: Path) -> None:
    """`trainctl evaluate --plot`: the confusion matrix (classifiers) or predicted against
    true values (regressors, one panel per target), as a PNG. TrainctlError without matplotlib."""
    import numpy as np

    from trainctl.runs.atomic import atomic_write_bytes

    matplotlib = _load_matplotlib()
    if matplotlib is None:
        raise TrainctlError("--plot needs matplotlib: pip install 'trainctl[plot]'")
    Figure, FigureCanvasAgg = matplotlib
    if report.task == "classification":
        names = report.report["classes"]
        matrix = np.asarray(report.report["confusion_matrix"], dtype=float)
        size = max(4.0, 0.6 * len(names) + 2.5)
        figure = Figure(figsize=(size + 1.0, size), dpi=100, layout="constrained")
        FigureCanvasAgg(figure)
        ax = figure.subplots()
        image = ax.imshow(matrix, cmap="Blues")
        figure.colorbar(image, ax=ax, label="rows")
        ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
        ax.set_yticks(range(len(names)), names)
        ax.set_xlabel("predicted class")
        ax.set_ylabel("true class")
        for i in range(len(names)):
            for j in range(len(names)):
                ax.text(j, i, f"{int(matrix[i, j])}", ha="center", va="center",
                        color="white" if matrix[i, j] > matrix.max() / 2 else "black")
        ax.set_title(f"confusion matrix, accuracy {report.report['accuracy']:.4f}")
    else:
        targets = report.report["targets"]
        figure = Figure(figsize=(5.0 * len(targets), 4.6), dpi=100, layout="constrained")
        FigureCanvasAgg(figure)
        axes = figure.subplots(1, len(targets), squeeze=False)[0]
        for j, (ax, row) in enumerate(zip(axes, targets)):
            truth, predicted = report.y_true[:, j], report.y_pred[:, j]
            ax.scatter(truth, predicted, s=8, alpha=0.6)
            low, high = float(min(truth.min(), predicted.min())), float(max(truth.max(), predicted.max()))
            ax.plot([low, high], [low, high], linestyle="--", color="0.4", linewidth=1, label="predicted = true")
            ax.set_xlabel(f"true {row['target']}")
            ax.set_ylabel(f"predicted {row['target']}")
            ax.set_title(f"{row['target']}: MAE {row['mae']:.4g}, RMSE {row['rmse']:.4g}, R² {row['r2']:.4f}")
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize="small")
    figure.suptitle(report.title)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    atomic_write_bytes(Path(path), buffer.getvalue())


# -- text ---------------------------------------------------------------------------------
SERIES_COLORS = ("blue", "orange", "green", "red", "magenta", "cyan", "yellow", "gray")


def _label(value: float) -> str:
    return f"{value:.4g}"


def render_panels_text(panels: list[Panel], *, width: int = 60, height: int = 12, color: bool = False) -> str:
    return "\n\n".join(render_chart(panel, width=width, height=height, color=color) for panel in panels)


def _finite_runs(series: Series) -> list[tuple[list[float], list[float]]]:
    """The series split at non-finite points, so the line breaks there instead of jumping."""
    runs: list[tuple[list[float], list[float]]] = [([], [])]
    for x, y in zip(series.x, series.y):
        if math.isfinite(x) and math.isfinite(y):
            runs[-1][0].append(float(x))
            runs[-1][1].append(float(y))
        elif runs[-1][0]:
            runs.append(([], []))
    return [run for run in runs if run[0]]


def render_chart(panel: Panel, *, width: int = 60, height: int = 12, color: bool = False) -> str:
    """A panel as a plotext line chart (`width` x `height` cells of plot area): one marker
    per series, references as horizontal lines, title and axis labels, and a legend line
    below (never over the data). Non-finite points are left out (the line breaks there)."""
    import plotext

    runs = [(index, run) for index, series in enumerate(panel.series) for run in _finite_runs(series)]
    if not runs:
        return f"{panel.title}\n  (no finite values)"
    figure = plotext.figure
    figure.clear()
    figure.theme("simple" if color else "colorless")
    figure.plot_size(max(width, 20) + 10, max(height, 5) + 5)  # + rulers, title and labels
    for index, (xs, ys) in runs:
        symbol = MARKERS[index % len(MARKERS)]
        marker = plotext.marker(symbol, SERIES_COLORS[index % len(SERIES_COLORS)]) if color else symbol
        signal = figure.signal(xs, ys, marker=marker)
        if len(xs) > 1:
            signal.lines()
        figure.draw(signal)
    for _, value in panel.references:
        if math.isfinite(value):
            figure.line(value, style="dotted")
    xs = [x for _, (run_x, _) in runs for x in run_x]
    ys = [y for _, (_, run_y) in runs for y in run_y] + [v for _, v in panel.references if math.isfinite(v)]
    low, high = min(ys), max(ys)
    if high == low:  # a flat series: centre it in a band of ±10% instead of plotext's ±1
        pad = abs(low) * 0.1 or 1.0
        figure.ruler("y").lim(low - pad, high + pad)
    if all(float(x).is_integer() for x in xs) and max(xs) - min(xs) <= 12:
        figure.ruler("x").ticks(sorted({int(x) for x in xs}))  # whole epochs, not 1.7 and 2.3
    figure.title(panel.title)
    figure.label(panel.xlabel, "x")
    figure.label(panel.ylabel or panel.title, "y")
    text = figure.build().string(colorless=not color)
    figure.clear()
    legend = [f"{MARKERS[i % len(MARKERS)]} {s.name}" for i, s in enumerate(panel.series)]
    legend += [f"┄ {name} = {_label(value)}" for name, value in panel.references]
    lines = [line.rstrip() for line in text.splitlines()]
    chart_width = max(len(line) for line in lines)
    rows = [""]
    for entry in legend:  # wrapped at the chart's width
        if rows[-1] and len(rows[-1]) + 3 + len(entry) > chart_width - 4:
            rows.append("")
        rows[-1] += ("   " if rows[-1] else "") + entry
    return "\n".join([*lines, *("    " + row for row in rows)])
