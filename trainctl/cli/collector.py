"""What a command does with Python's garbage collector, in one place.

A warm `trainctl train` imports and builds ~1M objects that live until the process ends
(the modules, numba's types, pydantic's validators, the kernels, the model). Python's
collector, left as it is, walks them again and again while they pile up, and once more at
exit. Each measure below says what it saved, measured on a warm `trainctl train
configs/linear_regression.yaml` (bench/startup_time.py, or interleaved runs: medians).

- The console script's entry (trainctl/__main__.py, which must act before this package is
  imported): the CLI's modules are imported with the collector paused, then frozen (left out
  of later collections): 5 ms of CPU, 7-16 ms of wall time.
- `owning_the_process`, around the console script's whole command (cli.app.main): marks the
  command as the process (`owns_process`), and freezes everything at the end, so the exit
  skips Python's last collection over every object: 0.10-0.12 s.
- `command_collections`, around every command (common.expected_failures), in-process calls
  too (typer's CliRunner, a notebook): collections every 50k allocations instead of 700,
  which find the same garbage without rescanning the pile ~20 times (0.1-0.2 s); what
  existed before the command sits out its collections (in a process that had numba and the
  kernels loaded, a full collection walked ~1M objects: ~0.1 s); a failed command's cycles (its
  traceback's frames, a data reader suspended mid-file) are collected while the libraries
  are whole, since an arrow reader reaching interpreter teardown with its threads alive
  aborts the process.
- `paused_until_training` with `TrainingBegins`, for `train` when it owns the process: the
  collector is paused while the command imports and builds, and at training's start what
  was built is frozen and collection resumes: 20 ms. From the first step on, what a long
  run or a compile leaves in cycles is collected as usual.

A program that calls the CLI in-process keeps its collector as it was: only
`command_collections` applies there, and it restores the thresholds and what it froze.
"""

from __future__ import annotations

import gc
from contextlib import contextmanager
from typing import Iterator

COMMAND_THRESHOLD = 50_000  # allocations between two youngest-generation collections

owns_process = False  # the command is the process (the console script), not a call inside a program
_paused_for_start = False  # paused_until_training turned the collector off, and nothing has turned it on


@contextmanager
def owning_the_process() -> Iterator[None]:
    """The console script's command: it owns the process; everything is frozen for the exit."""
    global owns_process
    owns_process = True
    try:
        yield
    finally:
        gc.freeze()


@contextmanager
def command_collections() -> Iterator[None]:
    """Every command: the raised threshold, what existed before it frozen (unless the program
    froze objects itself: unfreezing would thaw those too), and a collection after a failure."""
    thresholds = gc.get_threshold()
    gc.set_threshold(max(thresholds[0], COMMAND_THRESHOLD), *thresholds[1:])
    freezing = gc.get_freeze_count() == 0
    if freezing:
        gc.freeze()
    failed = True
    try:
        yield
        failed = False
    finally:
        gc.set_threshold(*thresholds)
        if failed:
            gc.collect()
        if freezing:
            gc.unfreeze()


@contextmanager
def paused_until_training() -> Iterator[None]:
    """`train` as the process: the collector paused until training_begins() (or the command's
    end, when it fails before training)."""
    global _paused_for_start
    paused = owns_process and gc.isenabled()
    if paused:
        gc.disable()
        _paused_for_start = True
    try:
        yield
    finally:
        if _paused_for_start:
            _paused_for_start = False
            gc.enable()


def training_begins() -> None:
    """The pause's end: what the command built is frozen, and collection resumes."""
    global _paused_for_start
    if _paused_for_start:
        _paused_for_start = False
        gc.freeze()
        gc.enable()


def training_begins_callback():
    """A fit callback that calls training_begins() in on_train_begin."""
    from trainctl.train.callbacks.base import Callback

    class TrainingBegins(Callback):
        def on_train_begin(self, logs=None):
            training_begins()

    return TrainingBegins()
