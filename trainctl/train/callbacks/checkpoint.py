"""ModelCheckpoint: saves the model when the monitored value improves (or every epoch / N batches)."""

from __future__ import annotations

import math
import warnings
from typing import Any, Callable, Literal

from pydantic import model_validator

from trainctl.config.base import FiniteFloat, PositiveInt, StrictModel
from trainctl.train.callbacks.base import CALLBACKS, Callback
from trainctl.train.callbacks.monitor import _MODE, _check_monitor, _finite, infer_mode

# -- checkpoints -------------------------------------------------------------------
Saver = Callable[[str, dict[str, Any]], Any]


class ModelCheckpoint(Callback):
    """Decides when to checkpoint (Keras ModelCheckpoint); the injected saver writes.

    `set_saver(fn)`: `fn(tag, logs)` is called for each checkpoint with a tag such as
    `epoch-0003` (end of epoch 3) or `step-00000120` (after 120 optimizer steps), and a copy
    of the logs plus `epoch` (0-based), `step` (steps done) and, for step saves, `batch`.
    The saver keeps the last `keep_last` checkpoints (RunDir.save_checkpoint's keep_last).

    save_freq 'epoch' saves at the end of every `every_n_epochs`-th epoch; an int N saves
    after every N-th optimizer step (counted globally, so resume keeps the rhythm). With
    `save_best_only`, only when `monitor` beats the best so far. A checkpoint is never taken
    when the loss or the monitored value is not finite: it would replace a good one.
    """

    class Params(StrictModel):
        monitor: str = "val_loss"
        mode: _MODE = "auto"
        save_best_only: bool = False
        save_freq: Literal["epoch"] | PositiveInt = "epoch"  # or every N steps
        every_n_epochs: PositiveInt = 1  # with save_freq 'epoch'
        keep_last: PositiveInt = 3  # checkpoints kept; older ones are removed
        initial_value_threshold: FiniteFloat | None = None  # Keras: the best to beat at the start
        verbose: int = 0  # accepted for Keras; the display reports saves

        @model_validator(mode="after")
        def _every_n_epochs_needs_epoch_saves(self):
            if self.save_freq != "epoch" and self.every_n_epochs != 1:
                raise ValueError("every_n_epochs applies to save_freq 'epoch', not to step saves")
            return self

    def __init__(self, monitor: str = "val_loss", mode: str = "auto", save_best_only: bool = False,
                 save_freq: str | int = "epoch", every_n_epochs: int = 1, keep_last: int = 3,
                 initial_value_threshold: float | None = None, verbose: int = 0):
        super().__init__()
        if save_freq != "epoch" and not (isinstance(save_freq, int) and save_freq > 0):
            raise ValueError(f"model_checkpoint: save_freq must be 'epoch' or a positive int, got {save_freq!r}")
        self.monitor, self.mode, self.save_best_only = monitor, mode, save_best_only
        self.save_freq, self.every_n_epochs, self.keep_last = save_freq, int(every_n_epochs), int(keep_last)
        self.initial_value_threshold, self.verbose = initial_value_threshold, verbose
        self.saver: Saver | None = None
        self.direction: str | None = None
        self.best: float | None = None
        self.saved: list[str] = []  # tags, in order
        self.skipped_nonfinite = 0
        self.epoch = 0
        self._resumed = False

    def set_saver(self, saver: Saver) -> None:
        self.saver = saver

    def _initial_best(self) -> float:
        if self.initial_value_threshold is not None:
            return float(self.initial_value_threshold)
        return math.inf if self.direction == "min" else -math.inf

    def on_train_begin(self, logs=None):
        if self.save_best_only:
            self.monitor = _check_monitor("model_checkpoint", self.monitor, self.params, per_batch=self.save_freq != "epoch")
        self.direction = infer_mode(self.mode, self.monitor, self.model)
        if not self._resumed:
            self.best = self._initial_best()
            self.saved, self.skipped_nonfinite = [], 0
        self._resumed = False

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_batch_end(self, batch, logs=None):
        if self.save_freq == "epoch":
            return
        step = int(self.model.optimizer.iterations)
        if step % self.save_freq == 0:
            self._maybe_save(f"step-{step:08d}", {**(logs or {}), "epoch": self.epoch, "batch": batch, "step": step})

    def on_epoch_end(self, epoch, logs=None):
        if self.save_freq != "epoch" or (epoch + 1) % self.every_n_epochs != 0:
            return
        step = int(self.model.optimizer.iterations)
        self._maybe_save(f"epoch-{epoch + 1:04d}", {**(logs or {}), "epoch": epoch, "step": step})

    def _maybe_save(self, tag: str, logs: dict[str, Any]) -> None:
        if self.direction is None:
            self.direction = infer_mode(self.mode, self.monitor, self.model)
            self.best = self._initial_best()
        watched = [logs.get("loss"), logs.get(self.monitor)]
        if any(value is not None and not _finite(value) for value in watched):
            self.skipped_nonfinite += 1
            return
        if self.save_best_only:
            current = logs.get(self.monitor)
            if current is None:  # Keras: warns and saves anyway
                warnings.warn(f"model_checkpoint: can save best only with {self.monitor} available; saving",
                              stacklevel=2)
            else:
                current = float(current)
                better = current < self.best if self.direction == "min" else current > self.best
                if not better:
                    return
                self.best = current
        if self.saver is None:
            raise RuntimeError("model_checkpoint: no saver set; the run code must call set_saver()")
        self.saver(tag, logs)
        self.saved.append(tag)

    def get_state(self) -> dict[str, Any]:
        return {"best": self.best}

    def set_state(self, state: dict[str, Any]) -> None:
        self.best = None if state.get("best") is None else float(state["best"])
        self._resumed = True


CALLBACKS.register("model_checkpoint")(ModelCheckpoint)
