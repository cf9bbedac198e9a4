"""Static rich output: the model summary, metric, compare and prediction tables, error lines."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from trainctl.cli.render.format import format_shape, format_value
from trainctl.errors import TrainctlError


def _field(obj: Any, name: str) -> Any:
    return obj[name] if isinstance(obj, Mapping) else getattr(obj, name)


def render_summary(
    console: Console,
    rows: Sequence[Any],
    totals: Any,
    *,
    weights: Sequence[tuple[str, Sequence[int]]] | None = None,
    extras: Mapping[str, Any] | None = None,
    title: str | None = None,
) -> None:
    """The Keras/TF.js model table.

    rows: objects (or dicts) with name, class_name, output_shape (None for the batch axis)
    and n_params. totals: object or dict with total, trainable, non_trainable.
    weights: optional (name, shape) pairs, shown as a second table. extras: label -> value
    lines printed last (optimizer, loss, FLOPs, weights size, ...).
    """
    table = Table(title=Text(title) if title else None, title_justify="left")
    table.add_column("Layer (type)", no_wrap=True)
    table.add_column("Output shape", no_wrap=True)
    table.add_column("Param #", justify="right", no_wrap=True)
    for row in rows:
        # Text cells, not markup: "[null,32]" would otherwise be read as a style tag.
        table.add_row(
            Text(f"{_field(row, 'name')} ({_field(row, 'class_name')})"),
            Text(format_shape(_field(row, "output_shape"))),
            Text(str(int(_field(row, "n_params")))),
        )
    console.print(table)
    console.print(Text(f"Total params: {int(_field(totals, 'total'))}"))
    console.print(Text(f"Trainable params: {int(_field(totals, 'trainable'))}"))
    console.print(Text(f"Non-trainable params: {int(_field(totals, 'non_trainable'))}"))
    if weights is not None:
        weight_table = Table()
        weight_table.add_column("Weight", no_wrap=True)
        weight_table.add_column("Shape", no_wrap=True)
        for name, shape in weights:
            weight_table.add_row(Text(str(name)), Text(format_shape(shape)))
        console.print(weight_table)
    if extras:
        for label, value in extras.items():
            console.print(Text(f"{label}: {value}"))


def render_metrics_table(console: Console, title: str, metrics: Mapping[str, float]) -> None:
    """`trainctl evaluate`: one row per loss/metric."""
    # no_wrap: a title wider than the table (a long data description) stays on one line.
    table = Table(title=Text(title, no_wrap=True, overflow="ignore") if title else None, title_justify="left")
    table.add_column("Metric", no_wrap=True)
    table.add_column("Value", justify="right", no_wrap=True)
    for name, value in metrics.items():
        table.add_row(Text(str(name)), Text(format_value(value)))
    console.print(table)


def render_evaluation_report(console: Console, report: Any) -> None:
    """`trainctl evaluate` after the metrics table: for a classifier the per-class report
    (precision, recall, F1, support by class name) and the confusion matrix; for a
    regressor MAE, RMSE and R² per target, in the target's units."""
    data = report.report
    if report.task == "classification":
        table = Table(title="per class", title_justify="left")
        for column in ("class", "precision", "recall", "f1", "support"):
            table.add_column(column, justify="left" if column == "class" else "right", no_wrap=True)
        for row in data["per_class"]:
            table.add_row(Text(row["class"]), *(Text(f"{row[key]:.4f}") for key in ("precision", "recall", "f1")),
                          Text(str(row["support"])))
        table.add_section()
        for label, key in (("macro avg", "macro_avg"), ("weighted avg", "weighted_avg")):
            avg = data[key]
            table.add_row(Text(label), *(Text(f"{avg[k]:.4f}") for k in ("precision", "recall", "f1")), Text(str(avg["support"])))
        table.add_row(Text("accuracy"), Text(""), Text(""), Text(f"{data['accuracy']:.4f}"), Text(str(data["macro_avg"]["support"])))
        console.print(table)
        matrix = Table(title="confusion matrix (rows: true class, columns: predicted)", title_justify="left")
        matrix.add_column("true \\ predicted", no_wrap=True)
        for name in data["classes"]:
            matrix.add_column(Text(name), justify="right", no_wrap=True)
        for name, row in zip(data["classes"], data["confusion_matrix"]):
            matrix.add_row(Text(name), *(Text(str(v)) for v in row))
        console.print(matrix)
        return
    table = Table(title="per target (in the target's units)", title_justify="left")
    for column in ("target", "MAE", "RMSE", "R²", "rows"):
        table.add_column(column, justify="left" if column == "target" else "right", no_wrap=True)
    for row in data["targets"]:
        table.add_row(Text(row["target"]), Text(format_value(row["mae"])), Text(format_value(row["rmse"])),
                      Text(format_value(row["r2"])), Text(str(row["n"])))
    console.print(table)


def _sort_key(value: Any) -> float | None:
    """Numbers sort as themselves; "0.12 ± 0.01" sorts by its mean; anything else last."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return None if math.isnan(float(value)) else float(value)
    try:
        number = float(str(value).split("±")[0].strip())
    except ValueError:
        return None
    return None if math.isnan(number) else number


def render_compare_table(
    console: Console,
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[str],
    sort_by: str | None = None,
    mode: str = "min",
    *,
    title: str | None = None,
) -> None:
    """Experiment results, one row per run (or per config), best first.

    rows: dicts keyed by column; values are numbers (shown with format_value) or
    preformatted strings such as mean_std(...). sort_by: a column; mode: "min" or "max"
    (which end is best). Rows without a sortable value go last. The best value is bold.
    """
    if mode not in ("min", "max"):
        raise TrainctlError(f"sort mode must be 'min' or 'max', not {mode!r}")
    if sort_by is not None and sort_by not in columns:
        raise TrainctlError(f"cannot sort by {sort_by!r}: the columns are {', '.join(columns)}")
    ordered = list(rows)
    if sort_by is not None:
        sign = 1.0 if mode == "min" else -1.0

        def key(row: Mapping[str, Any]) -> tuple[int, float]:
            number = _sort_key(row.get(sort_by))
            return (1, 0.0) if number is None else (0, sign * number)

        ordered.sort(key=key)  # stable: ties keep the caller's order
    table = Table(title=Text(title) if title else None, title_justify="left")
    for column in columns:
        numeric = any(_sort_key(row.get(column)) is not None for row in rows)
        table.add_column(Text(column), justify="right" if numeric else "left", no_wrap=True)
    best = _sort_key(ordered[0].get(sort_by)) if sort_by is not None and ordered else None
    for row in ordered:
        cells: list[Text] = []
        for column in columns:
            value = row.get(column)
            if value is None:
                text = "–"
            elif isinstance(value, float):
                text = format_value(value)
            else:
                text = str(value)
            is_best = column == sort_by and best is not None and _sort_key(value) == best
            cells.append(Text(text, style="bold green" if is_best else ""))
        table.add_row(*cells)
    console.print(table)


def render_summary_line(console: Console, line: str, run_path: str) -> None:
    """The end of `trainctl train`: one line of final values (on a terminal, wrapped between
    values at its width; piped, one line for the tools reading it), then where the run went."""
    from trainctl.cli.render.format import wrap_items

    head, *items = line.split("  ")
    width = console.width if console.is_terminal else 1 << 30
    console.print(wrap_items(Text(head), [(item, "") for item in items], width), soft_wrap=True)
    console.print(Text(f"run: {run_path}"), soft_wrap=True)


_PREDICTION_ROWS = 20  # rows shown on screen; --output writes them all
_PREDICTION_COLUMNS = 10  # output columns shown before eliding the rest


def render_predictions(console: Console, result: Any, *, max_rows: int = _PREDICTION_ROWS) -> None:
    """`trainctl predict` without --output: the first rows as a table.

    result: has outputs [n, ...] and, for classifiers, classes [n] (ints) and optional
    class_names. A classifier shows its class (by name when known) and probabilities.
    """
    outputs = result.outputs
    n_rows = int(outputs.shape[0])
    flat = outputs.reshape(n_rows, -1)
    classes = getattr(result, "classes", None)
    n_columns = flat.shape[1]
    labels = result.output_labels()  # the CSV's header too
    shown_columns = min(n_columns, _PREDICTION_COLUMNS)
    table = Table()
    table.add_column("#", justify="right", no_wrap=True)
    if classes is not None:
        table.add_column("class", no_wrap=True)
    for label in labels[:shown_columns]:
        table.add_column(Text(label), justify="right", no_wrap=True)
    if shown_columns < n_columns:
        table.add_column(Text(f"… {n_columns - shown_columns} more"), no_wrap=True)
    for index in range(min(n_rows, max_rows)):
        cells = [Text(str(index))]
        if classes is not None:
            cells.append(Text(result.class_label(int(classes[index]))))
        cells += [Text(f"{float(v):.4g}") for v in flat[index, :shown_columns]]
        if shown_columns < n_columns:
            cells.append(Text("…"))
        table.add_row(*cells)
    console.print(table)
    if n_rows > max_rows:
        console.print(Text(f"… {n_rows - max_rows} more rows of {n_rows}; --output FILE writes them all"))


def render_error(console_stderr: Console, message: str | BaseException) -> None:
    """One red line `error: ...` per problem (a ConfigError's problems each get a line)."""
    if isinstance(message, BaseException):
        problems = getattr(message, "problems", None) or str(message).splitlines() or [
            type(message).__name__
        ]
    else:
        problems = str(message).splitlines() or [""]
    for problem in problems:
        # Text, not markup: messages quote user input such as "[784]" or "[bold]".
        console_stderr.print(Text(f"error: {problem}", style="red"), soft_wrap=True)
