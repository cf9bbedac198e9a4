"""Everything rich: the model summary, live training progress, error lines, metric and
compare tables. The CLI imports this module; the library never does.

Consoles are created by the caller (`Console()` for stdout, `Console(stderr=True)` for
errors); nothing here forces colour or a terminal, so NO_COLOR and pipes behave.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from trainctl.train.callbacks import Callback, Logs
from trainctl.errors import TrainctlError

__all__ = [
    "MODES",
    "ProgressDisplay",
    "format_duration",
    "format_shape",
    "format_value",
    "human_bytes",
    "human_count",
    "mean_std",
    "render_compare_table",
    "render_error",
    "render_metrics_table",
    "render_predictions",
    "render_summary",
    "render_summary_line",
]

MODES = ("auto", "rich", "plain", "jsonl", "quiet")
_BATCH_KEYS = frozenset(("batch", "size"))
_BAR_WIDTH = 20  # characters of the live progress bar
_MAX_CHECK_EVERY = 200  # at most this many batches between clock reads, so a slowdown shows soon


# --------------------------------------------------------------------------- formatting


def format_shape(shape: Iterable[int | None]) -> str:
    """(None, 28, 28, 1) -> "[null,28,28,1]", the way TF.js prints shapes."""
    return "[" + ",".join("null" if dim is None else str(int(dim)) for dim in shape) + "]"


def format_value(value: float) -> str:
    """A loss or metric value: 4 decimals in the everyday range, scientific outside it."""
    value = float(value)
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    magnitude = abs(value)
    if value == 0 or 1e-3 <= magnitude < 1e6:
        return f"{value:.4f}"
    return f"{value:.3e}"


def format_duration(seconds: float) -> str:
    """0.42 -> "0.42s", 12.3 -> "12.3s", 125 -> "2:05", 3725 -> "1:02:05"."""
    if seconds < 1:
        return f"{seconds:.2f}s"
    if seconds < 60:
        return f"{seconds:.1f}s"
    whole = int(round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def human_bytes(n_bytes: int) -> str:
    """101800 -> "99.4 KiB" (binary units)."""
    size = float(n_bytes)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{int(size)} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def human_count(count: float) -> str:
    """50800 -> "50.8K", 1.2e9 -> "1.2G" (decimal units, for FLOPs and throughput)."""
    count = float(count)
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(count) >= scale:
            return f"{count / scale:.1f}{unit}"
    return f"{count:.0f}"


def mean_std(values: Sequence[float]) -> str:
    """"0.1234 ± 0.0056": mean and sample standard deviation (ddof=1); one value alone."""
    values = [float(v) for v in values]
    if not values:
        return "–"
    mean = math.fsum(values) / len(values)
    if len(values) == 1:
        return format_value(mean)
    variance = math.fsum((v - mean) ** 2 for v in values) / (len(values) - 1)
    return f"{format_value(mean)} ± {format_value(math.sqrt(variance))}"


def _field(obj: Any, name: str) -> Any:
    return obj[name] if isinstance(obj, Mapping) else getattr(obj, name)


# --------------------------------------------------------------------------- tables


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
    """The end of `trainctl train`: one line of final values, then where the run went."""
    console.print(Text(line), soft_wrap=True)
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


# --------------------------------------------------------------------------- progress


class ProgressDisplay(Callback):
    """Training progress as a callback.

    mode: "rich" (live bar, for terminals), "plain" (one line per epoch), "jsonl" (one JSON
    object per epoch and one at train end), "quiet" (nothing), or "auto": rich when the
    console is a terminal, plain otherwise. Epochs print 1-based (`epoch 3/10`).

    The running values on the live line are the size-weighted means of this epoch's batch
    values so far. The live line is redrawn at most once per `refresh_interval` seconds;
    on_batch_end otherwise only accumulates (about 0.2 µs; the clock is read every few
    batches, adaptively). `clock` is injectable for tests. Use as a context manager (or call close()) so an interrupted run restores
    the terminal.
    """

    def __init__(
        self,
        console: Console,
        mode: str = "auto",
        *,
        refresh_interval: float = 0.1,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"unknown progress mode {mode!r}; expected one of {MODES}")
        if mode == "auto":
            mode = "rich" if console.is_terminal else "plain"
        self.console = console
        self.mode = mode
        self._tracks_batches = mode == "rich"  # only the live line shows running values
        self.refresh_interval = float(refresh_interval)
        self.clock = clock
        self.refreshes = 0  # redraws of the live line; the throttle test counts them
        self._live: Live | None = None
        self._status: Any = None
        self._train_start = 0.0
        self._epochs_done = 0
        self._last_epoch_logs: Logs = {}
        self._epoch = 0
        self._in_epoch = False
        self._compile_start: float | None = None  # set while kernels compile
        self._reset_epoch(0.0)

    # -- epoch state

    def _reset_epoch(self, now: float) -> None:
        self._epoch_start = now
        self._last_refresh = now
        self._compile_seconds = 0.0  # compile time inside this epoch, left out of rates
        self._batches = 0
        self._samples = 0.0
        self._keys: tuple[str, ...] = ()
        self._sums: list[float] | None = None  # per key: sum of value * size
        self._checked_at = now
        self._checked_batches = 0
        self._check_every = 1
        self._next_check = 1

    def running_logs(self) -> Logs:
        """Size-weighted mean of this epoch's batch values so far (tracked in rich mode)."""
        if self._sums is None or self._samples <= 0:
            return {}
        return {key: total / self._samples for key, total in zip(self._keys, self._sums)}

    def _epoch_number(self, epoch: int) -> tuple[int, int | None]:
        return epoch + 1, self.params.get("epochs")

    def _ordered(self, logs: Mapping[str, float]) -> list[tuple[str, float]]:
        """loss, then metrics in params order, then the rest; validation values after."""
        wanted = ["loss", *(self.params.get("metrics") or ())]
        keys = [k for k in logs if k not in _BATCH_KEYS]
        train = [k for k in keys if not k.startswith("val_")]
        val = [k for k in keys if k.startswith("val_")]

        def rank(key: str) -> tuple[int, int]:
            base = key[4:] if key.startswith("val_") else key
            return (0, wanted.index(base)) if base in wanted else (1, 0)

        ordered = sorted(train, key=rank) + sorted(val, key=rank)
        return [(key, float(logs[key])) for key in ordered]

    # -- events

    def on_train_begin(self, logs=None):
        self._train_start = self.clock()
        self._epochs_done = 0
        self._last_epoch_logs = {}

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self._in_epoch = True
        self._reset_epoch(self.clock())
        # The loop may announce compiling before the first epoch begins; the bar then
        # waits for on_compile_end instead of competing with the spinner.
        if self.mode == "rich" and self._status is None:
            self._start_live()
            self._refresh(self._epoch_start)

    def on_batch_end(self, batch, logs=None):
        # Hot path (every batch): accumulate, and look at the clock only every
        # `_check_every` batches, sized so the clock is read about 8 times per interval.
        if not self._tracks_batches:
            return
        size = logs["size"]
        sums = self._sums
        if sums is None:
            self._keys = tuple(k for k in logs if k not in _BATCH_KEYS)
            sums = self._sums = [0.0] * len(self._keys)
        i = 0
        for key in self._keys:
            sums[i] += logs.get(key, 0.0) * size
            i += 1
        self._samples += size
        self._batches += 1
        if self._batches >= self._next_check:
            self._check_clock()

    def _check_clock(self) -> None:
        now = self.clock()
        batches = self._batches - self._checked_batches
        if batches > 0:
            per_batch = (now - self._checked_at) / batches
            if per_batch > 0:
                step = int(self.refresh_interval / 8 / per_batch)
            else:
                step = _MAX_CHECK_EVERY
            self._check_every = min(max(step, 1), _MAX_CHECK_EVERY)
        self._checked_at, self._checked_batches = now, self._batches
        self._next_check = self._batches + self._check_every
        if now - self._last_refresh >= self.refresh_interval:
            self._refresh(now)

    def on_epoch_end(self, epoch, logs=None):
        now = self.clock()
        seconds = now - self._epoch_start
        self._in_epoch = False
        logs = dict(logs or {})
        self._epochs_done += 1
        self._last_epoch_logs = logs
        number, total = self._epoch_number(epoch)
        if self.mode == "quiet":
            return
        if self.mode == "jsonl":
            record: dict[str, Any] = {"event": "epoch_end", "epoch": number, "epochs": total}
            record.update(self._ordered(logs))
            record["seconds"] = round(seconds, 6)
            self._emit_json(record)
            return
        values = "  ".join(f"{key} {format_value(value)}" for key, value in self._ordered(logs))
        head = f"{number}/{total}" if total is not None else f"{number}"
        if self.mode == "plain":
            parts = [f"epoch {head}", values, format_duration(seconds)]
            self.console.out("  ".join(p for p in parts if p), highlight=False)
            return
        self.close()
        line = Text()
        line.append(f"Epoch {head}", style="bold")
        line.append(f"  {format_duration(seconds)}", style="dim")
        for key, value in self._ordered(logs):
            style = "cyan" if key.startswith("val_") else ""
            line.append("  ")
            line.append(f"{key} {format_value(value)}", style=style)
        self.console.print(line, soft_wrap=True)

    def on_train_end(self, logs=None):
        if self.mode == "rich":
            self._stop_live()
        if self.mode != "jsonl":
            return
        record: dict[str, Any] = {
            "event": "train_end",
            "epochs_completed": self._epochs_done,
            "seconds": round(self.clock() - self._train_start, 6),
        }
        record.update(self._ordered(logs or self._last_epoch_logs))
        self._emit_json(record)

    def on_compile_begin(self, logs=None):
        self._compile_start = self.clock()
        if self.mode == "plain":
            self.console.out("compiling kernels…", highlight=False)
        elif self.mode == "rich":
            # One live display at a time (rich < 14.1 refuses nesting): pause the bar.
            self._stop_live()
            self._status = self.console.status("compiling kernels…")
            self._status.start()

    def on_compile_end(self, logs=None):
        now = self.clock()
        if self._compile_start is not None:
            if self._in_epoch:  # only the part inside this epoch skews its rate
                self._compile_seconds += now - max(self._compile_start, self._epoch_start)
            self._compile_start = None
        if self.mode == "rich":
            if self._status is not None:
                self._status.stop()
                self._status = None
            if self._in_epoch:  # compiles outside an epoch (evaluate, predict) have no bar
                self._start_live()
                self._refresh(now)

    # -- output

    def close(self) -> None:
        """Stop any live display (safe to call twice)."""
        if self._status is not None:
            self._status.stop()
            self._status = None
        self._stop_live()

    def __enter__(self) -> ProgressDisplay:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _emit_json(self, record: dict[str, Any]) -> None:
        clean = {
            key: (None if isinstance(v, float) and not math.isfinite(v) else v)
            for key, v in record.items()
        }
        self.console.file.write(json.dumps(clean, allow_nan=False) + "\n")
        self.console.file.flush()

    def _start_live(self) -> None:
        if self._live is not None:
            return
        import sys

        # Redirect print() above the bar only when the bar really is on stdout/stderr.
        on_std = self.console.file in (sys.stdout, sys.stderr)
        self._live = Live(
            console=self.console,
            auto_refresh=False,
            transient=True,
            redirect_stdout=on_std,
            redirect_stderr=on_std,
        )
        self._live.start()

    def _stop_live(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    def _refresh(self, now: float) -> None:
        self._last_refresh = now
        if self._live is None:
            return
        self.refreshes += 1
        self._live.update(self._live_line(now), refresh=True)

    def _live_line(self, now: float) -> Text:
        """`Epoch 2/5 ━━━━╸━━━ batch 23/50 · ETA 0.3s · loss 0.1070  acc 0.9000 · 6.2K samples/s`.

        One Text, cut at the right edge when the terminal is narrow, so the epoch and bar
        always show and throughput is the first thing to go.
        """
        number, total = self._epoch_number(self._epoch)
        steps = self.params.get("steps")
        line = Text(no_wrap=True, overflow="ellipsis")
        line.append(f"Epoch {number}/{total}" if total else f"Epoch {number}", style="bold")
        if steps:
            units = int(2 * _BAR_WIDTH * min(self._batches, steps) / steps)
            full, half = divmod(units, 2)
            line.append(" ")
            line.append("━" * full + ("╸" if half else ""), style="magenta")
            line.append("━" * (_BAR_WIDTH - full - half), style="bright_black")
            line.append(f" batch {self._batches}/{steps}")
        else:
            line.append(f" batch {self._batches}")
        elapsed = max(now - self._epoch_start - self._compile_seconds, 1e-9)
        if steps and self._batches:
            remaining = max(steps - self._batches, 0) * elapsed / self._batches
            line.append(f" · ETA {format_duration(remaining)}", style="dim")
        running = "  ".join(f"{k} {format_value(v)}" for k, v in self._ordered(self.running_logs()))
        if running:
            line.append(" · " + running)
        if self._batches:
            line.append(f" · {human_count(self._samples / elapsed)} samples/s", style="dim")
        return line


class ExperimentProgressLine:
    """Live `runs done/total · running · failed · best so far` line for `trainctl experiment`
    (a plain line per finished run when the console is not a terminal)."""

    def __init__(self, console: Console):
        self.console = console
        self._live: Live | None = None

    def __enter__(self) -> "ExperimentProgressLine":
        if self.console.is_terminal:
            self._live = Live(Text(""), console=self.console, refresh_per_second=4, transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc_info) -> None:
        if self._live is not None:
            self._live.__exit__(*exc_info)
            self._live = None

    def __call__(self, progress: Any) -> None:
        best = progress.best
        best_text = (f"best {progress.metric} {format_value(best.final)} ({best.run_id})"
                     if best is not None and best.final is not None else "best: none yet")
        line = (f"runs {progress.done + progress.failed}/{progress.total}  running {progress.running}  "
                f"failed {progress.failed}  skipped {progress.skipped}  {best_text}")
        if self._live is not None:
            self._live.update(Text(line))
        elif progress.last is not None:
            last = progress.last
            outcome = last.status if last.final is None else f"{progress.metric} {format_value(last.final)}"
            self.console.print(Text(f"{last.run_id}: {outcome}  ({line})"))
