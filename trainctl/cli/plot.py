"""Curves of a finished (or interrupted) run: loss and metrics per epoch, train and
validation, from history.csv; and, when the run recorded them (weight_history callback),
weight trajectories against their reference values (the "basic training loops" guide's
"weights vs true weight" figure).

With matplotlib (the optional `plot` extra, imported lazily, Agg backend, no pyplot state)
the figure is written as a PNG; in the terminal, or when matplotlib is missing, the same
panels are drawn as text by a small character line-chart renderer.
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
INSTALL_HINT = "matplotlib is not installed (pip install 'trainctl[plot]'); drawing in the terminal instead"


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
    return Panel("weights vs reference" if references else "weights", series, references)


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
             height: int = 12) -> str:
    """Draw the run's curves. Writes a PNG (default RUN_DIR/plot.png) and returns a line
    saying where; with `terminal=True`, or without matplotlib, returns the text charts
    (`width` x `height` characters of plot area per panel) instead."""
    run_dir = Path(run_dir)
    panels = collect_panels(run_dir)
    matplotlib = None if terminal else _load_matplotlib()
    if matplotlib is None:
        text = render_panels_text(panels, width=width, height=height)
        return text if terminal else f"{INSTALL_HINT}\n{text}"
    path = Path(out) if out is not None else run_dir / PLOT_FILE
    write_png(panels, path, title=f"{run_dir.resolve().parent.name}/{run_dir.name}", matplotlib=matplotlib)
    return f"plot written to {path}"


# -- PNG ----------------------------------------------------------------------------------
def write_png(panels: list[Panel], path: Path, *, title: str = "", matplotlib: Any = None) -> None:
    """Render `panels` in a grid (two columns) and write the PNG atomically."""
    from trainctl.runs.atomic import atomic_write_bytes

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
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
        if all(float(x).is_integer() for s in panel.series for x in s.x):
            ax.xaxis.get_major_locator().set_params(integer=True)
    for index in range(len(panels), rows * columns):
        axes[index // columns][index % columns].set_visible(False)
    if title:
        figure.suptitle(title)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    atomic_write_bytes(path, buffer.getvalue())


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
def _label(value: float) -> str:
    return f"{value:.4g}"


def render_panels_text(panels: list[Panel], *, width: int = 60, height: int = 12) -> str:
    return "\n\n".join(render_chart(panel, width=width, height=height) for panel in panels)


def render_chart(panel: Panel, *, width: int = 60, height: int = 12) -> str:
    """A panel as a character line chart: one marker per series (legend below), dashed
    reference lines, y labels at top, middle and bottom, x labels at both ends.
    Non-finite points are left out (the line breaks there)."""
    width, height = max(width, 8), max(height, 3)
    points = [(x, y) for s in panel.series for x, y in zip(s.x, s.y) if math.isfinite(x) and math.isfinite(y)]
    ys = [y for _, y in points] + [value for _, value in panel.references if math.isfinite(value)]
    xs = [x for x, _ in points]
    lines = [panel.title]
    if not points:
        lines.append("  (no finite values)")
        return "\n".join(lines)
    y_low, y_high = min(ys), max(ys)
    if y_high == y_low:
        pad = abs(y_low) * 0.1 or 1.0
        y_low, y_high = y_low - pad, y_high + pad
    x_low, x_high = min(xs), max(xs)

    def column(x: float) -> int:
        return 0 if x_high == x_low else round((x - x_low) / (x_high - x_low) * (width - 1))

    def row(y: float) -> int:  # 0 is the top row
        return round((y_high - y) / (y_high - y_low) * (height - 1))

    grid = [[" "] * width for _ in range(height)]
    for _, value in panel.references:
        if math.isfinite(value):
            r = row(value)
            for c in range(0, width, 2):
                grid[r][c] = "-"
    for index, series in enumerate(panel.series):
        marker = MARKERS[index % len(MARKERS)]
        previous: tuple[int, int] | None = None
        for x, y in zip(series.x, series.y):
            if not (math.isfinite(x) and math.isfinite(y)):
                previous = None
                continue
            c, r = column(x), row(y)
            if previous is not None:
                _segment(grid, previous, (c, r), marker)
            grid[r][c] = marker
            previous = (c, r)

    labels = {0: _label(y_high), height - 1: _label(y_low), (height - 1) // 2: _label((y_high + y_low) / 2)}
    for _, value in panel.references:  # a reference line is labelled with its own value
        if math.isfinite(value):
            labels[row(value)] = _label(value)
    gutter = max(len(text) for text in labels.values())
    for r in range(height):
        tick = "┤" if r in labels else "│"
        lines.append(f"{labels.get(r, ''):>{gutter}} {tick}{''.join(grid[r]).rstrip()}")
    lines.append(" " * (gutter + 1) + "└" + "─" * width)
    left, right = _label(x_low), _label(x_high)
    axis = left + " " * max(1, width - len(left) - len(right)) + right if x_high != x_low else left
    lines.append(" " * (gutter + 2) + axis + f"  {panel.xlabel}")
    legend = [f"{MARKERS[i % len(MARKERS)]} {s.name}" for i, s in enumerate(panel.series)]
    legend += [f"- {name} = {_label(value)}" for name, value in panel.references]
    lines.append(" " * (gutter + 2) + "   ".join(legend))
    return "\n".join(lines)


def _segment(grid: list[list[str]], start: tuple[int, int], end: tuple[int, int], marker: str) -> None:
    """Fill the cells between two plotted points so the curve reads as a line: for each
    column in between, the rows from the previous column's height to this one's."""
    (c0, r0), (c1, r1) = start, end
    if c1 <= c0:
        return
    previous_row = r0
    for c in range(c0 + 1, c1 + 1):
        r = round(r0 + (r1 - r0) * (c - c0) / (c1 - c0))
        low, high = sorted((previous_row, r))
        # the vertical run sits in the column where the jump happens, like a step
        for fill in range(low, high + 1):
            if grid[fill][c] == " " or grid[fill][c] == "-":
                grid[fill][c] = marker
        previous_row = r
