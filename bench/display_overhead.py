"""What the progress display costs during training (target: under 2% of training time).

A simulated training loop runs N batches of fixed numpy work (~70 µs each, about a small
dense model's step) through a CallbackList, once with no callbacks and once per display
mode. The rich display writes to a terminal-like Console (force_terminal=True) backed by
/dev/null, so its full rendering path runs. Runs are interleaved and repeated; the table
shows the fastest (least disturbed) time per configuration and its overhead over the bare
loop, plus the display's own per-batch cost measured without the work, divided by the
time of a batch: the steadier figure, since the timed one moves by about 1% between runs
on a shared machine. Times are this process's CPU time (time.process_time), so other
processes competing for the cores disturb them less than wall time would.

Run: python bench/display_overhead.py [--batches 20000] [--repeats 5] [--work-us 70]
"""

from __future__ import annotations

import os

# One BLAS thread: the work per batch must be steady for a 2% effect to be visible.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trainctl.train.callbacks import Callback, CallbackList  # noqa: E402
from trainctl.cli.render import ProgressDisplay  # noqa: E402

BATCH_SIZE = 32
EPOCHS = 10


class Work:
    """A dense layer's forward and backward on preallocated buffers, repeated to ~work_us."""

    def __init__(self, work_us: float):
        rng = np.random.default_rng(0)
        self.x = rng.random((BATCH_SIZE, 128), dtype=np.float32)
        self.w = rng.random((128, 64), dtype=np.float32)
        self.y = np.empty((BATCH_SIZE, 64), dtype=np.float32)
        self.dw = np.empty((128, 64), dtype=np.float32)
        self.repeats = 1
        once = self._time_per_call(2000)
        self.repeats = max(1, round(work_us * 1e-6 / once))
        self.seconds = self._time_per_call(2000)

    def _time_per_call(self, n: int) -> float:
        best = float("inf")
        for _ in range(5):
            start = time.process_time()
            for _ in range(n):
                self()
            best = min(best, (time.process_time() - start) / n)
        return best

    def __call__(self) -> float:
        for _ in range(self.repeats):
            np.matmul(self.x, self.w, out=self.y)
            np.matmul(self.x.T, self.y, out=self.dw)
        return float(self.y[0, 0])


def make_display(mode: str) -> tuple[list[Callback], Console | None]:
    if mode == "none":
        return [], None
    devnull = open(os.devnull, "w")  # noqa: SIM115 - closed by the caller via console.file
    console = Console(file=devnull, force_terminal=mode == "rich", width=120)
    return [ProgressDisplay(console, mode)], console


def train(n_batches: int, work: Work | None, mode: str) -> tuple[float, int]:
    """Run the simulated loop; returns (CPU seconds, refreshes of the live line)."""
    callbacks, console = make_display(mode)
    steps = n_batches // EPOCHS
    cb = CallbackList(callbacks)
    cb.set_params(
        {"epochs": EPOCHS, "initial_epoch": 0, "steps": steps, "samples": steps * BATCH_SIZE,
         "batch_size": BATCH_SIZE, "metrics": ["acc"]}
    )
    loss = 1.0
    start = time.process_time()
    cb.on_train_begin({})
    for epoch in range(EPOCHS):
        cb.on_epoch_begin(epoch, {})
        for batch in range(steps):
            logs = {"batch": batch, "size": BATCH_SIZE}
            cb.on_batch_begin(batch, logs)
            if work is not None:
                work()
            loss *= 0.9999
            logs["loss"] = loss
            logs["acc"] = 1.0 - loss
            cb.on_batch_end(batch, logs)
        cb.on_epoch_end(epoch, {"loss": loss, "acc": 1.0 - loss, "val_loss": loss, "val_acc": 1.0 - loss})
    cb.on_train_end({})
    seconds = time.process_time() - start
    refreshes = sum(getattr(c, "refreshes", 0) for c in callbacks)
    if console is not None:
        console.file.close()
    return seconds, refreshes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--work-us", type=float, default=70.0)
    args = parser.parse_args()

    work = Work(args.work_us)
    modes = ["none", "rich", "plain", "jsonl", "quiet"]
    times: dict[str, list[float]] = {mode: [] for mode in modes}
    refreshes: dict[str, int] = {}
    train(2000, work, "rich")  # warm up imports and caches
    for _ in range(args.repeats):
        for mode in modes:  # interleaved, so drift in machine speed hits every mode alike
            seconds, count = train(args.batches, work, mode)
            times[mode].append(seconds)
            refreshes[mode] = count

    # The display's own cost per batch, without the work: this is what the overhead is.
    bare = min(train(args.batches, None, "none")[0] for _ in range(args.repeats))
    own: dict[str, float] = {}
    for mode in modes[1:]:
        with_display = min(train(args.batches, None, mode)[0] for _ in range(args.repeats))
        own[mode] = (with_display - bare) / args.batches

    base = min(times["none"])
    per_batch = base / args.batches
    print(
        f"{args.batches} batches x {work.seconds * 1e6:.0f} µs of numpy work "
        f"({per_batch * 1e6:.1f} µs per batch with the loop); fastest of {args.repeats} runs"
    )
    table = Table()
    for column in ("mode", "seconds", "timed", "µs/batch", "µs÷batch", "refreshes"):
        table.add_column(column, justify="left" if column == "mode" else "right")
    for mode in modes:
        fastest = min(times[mode])
        if mode == "none":
            table.add_row(mode, f"{fastest:.3f}", "–", "–", "–", "–")
            continue
        table.add_row(
            mode,
            f"{fastest:.3f}",
            f"{(fastest - base) / base * 100:+.2f}%",
            f"{own[mode] * 1e6:.2f}",
            f"{own[mode] / per_batch * 100:.2f}%",
            str(refreshes[mode]) if mode == "rich" else "–",
        )
    Console().print(table)
    print(
        "timed: overhead of the whole run over the bare loop; µs/batch: the display's own cost "
        "per batch (no work); µs÷batch: that cost as a share of a batch. Target: rich < 2%."
    )


if __name__ == "__main__":
    main()
