"""Live output while training: the ProgressDisplay callback (rich, plain, jsonl, quiet) and the
one-line progress of an experiment.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.text import Text

from trainctl.cli.render.format import format_duration, format_per_step, format_value, human_count, wrap_items
from trainctl.train.callbacks import Callback, Logs
from trainctl.train.epoch import EpochAccumulator

MODES = ("auto", "rich", "plain", "jsonl", "quiet")
_BATCH_KEYS = frozenset(("batch", "size"))
_BAR_WIDTH = 20  # characters of the live progress bar
_MAX_CHECK_EVERY = 200  # at most this many batches between clock reads, so a slowdown shows soon


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
        self._running = EpochAccumulator()  # the fit loop's kind of running sums, keys from the first batch
        self._last_batch: int | None = None  # index of the last finished batch (a resumed epoch starts later)
        self._checked_at = now
        self._checked_batches = 0
        self._check_every = 1
        self._next_check = 1

    def running_logs(self) -> Logs:
        """Size-weighted mean of this epoch's batch values so far (tracked in rich mode)."""
        if self._running.seen <= 0:
            return {}
        return self._running.means()

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
        running = self._running
        if not running.seen:
            running.reset([k for k in logs if k not in _BATCH_KEYS])
        running.add([logs.get(key, 0.0) for key in running.keys], size)
        self._batches += 1
        self._last_batch = logs["batch"]
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
        self.console.print(self._finished_line(head, seconds, logs), soft_wrap=True)

    def _finished_line(self, head: str, seconds: float, logs: Mapping[str, float]) -> Text:
        """`Epoch 3/15  750/750 ━━━━━━━━━━━━━━━━━━━━ 0.59s 786us/step  loss 0.0219  ...`: the
        epoch's final bar, Keras's step counter and time per step (compile time left out),
        then the values, wrapped between values (never inside one) at the console's width."""
        steps = self.params.get("steps")
        done = self._last_batch + 1 if self._last_batch is not None else self._batches
        line = Text()
        line.append(f"Epoch {head}", style="bold")
        line.append(f"  {done}/{steps} " if steps else f"  {done} ")
        if steps:
            _append_bar(line, done, steps)
            line.append(" ")
        compute = max(seconds - self._compile_seconds, 0.0)
        line.append(format_duration(seconds), style="dim")
        if self._batches:
            line.append(f" {format_per_step(compute / self._batches)}", style="dim")
        items = [(f"{key} {format_value(value)}", "cyan" if key.startswith("val_") else "")
                 for key, value in self._ordered(logs)]
        return wrap_items(line, items, self.console.width)

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
        # `elapsed`: the loop announces compiling only once the first step has run that long.
        self._compile_start = self.clock() - float((logs or {}).get("elapsed", 0.0))
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
            line.append(" ")
            _append_bar(line, self._batches, steps)
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
            line.append(f" · {human_count(self._running.seen / elapsed)} samples/s", style="dim")
        return line


def _append_bar(line: Text, done: int, steps: int) -> None:
    """`━━━━━━╸━━━━━━━━━━━━━` for done/steps: magenta up to done (half cells too), grey after."""
    units = int(2 * _BAR_WIDTH * min(done, steps) / steps)
    full, half = divmod(units, 2)
    line.append("━" * full + ("╸" if half else ""), style="magenta")
    line.append("━" * (_BAR_WIDTH - full - half), style="bright_black")


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
