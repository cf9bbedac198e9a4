"""ModelCheckpoint: saves the model when the monitored value improves (or every epoch / N batches)."""

from __future__ import annotations

import math
import warnings
from typing import Any, Callable, Literal

from pydantic import model_validator

from trainctl.config.base import FiniteFloat, PositiveInt, StrictModel, bounded_int
from trainctl.runs.files import MODEL_CHECKPOINTS_DIR
from trainctl.train.callbacks.base import Arrays, Monitored, RunContext, register
from trainctl.train.callbacks.monitor import logged, Mode, MonitoringCallback, _finite

# -- checkpoints -------------------------------------------------------------------
Saver = Callable[[str, dict[str, Any]], Any]


@register("model_checkpoint")
class ModelCheckpoint(MonitoringCallback):
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
        mode: Mode = "auto"
        save_best_only: bool = False
        save_freq: Literal["epoch"] | PositiveInt = "epoch"  # or every N steps
        every_n_epochs: PositiveInt = 1  # with save_freq 'epoch'
        keep_last: PositiveInt = 3  # checkpoints kept; older ones are removed
        initial_value_threshold: FiniteFloat | None = None  # Keras: the best to beat at the start
        verbose: bounded_int(ge=0, le=2) = 0  # accepted for Keras; the display reports saves

        @model_validator(mode="after")
        def _every_n_epochs_needs_epoch_saves(self):
            if self.save_freq != "epoch" and self.every_n_epochs != 1:
                raise ValueError("every_n_epochs applies to save_freq 'epoch', not to step saves")
            return self

    def setup(self) -> None:
        super().setup()
        self.saver: Saver | None = None
        self.best: float | None = None
        self.saved: list[str] = []  # tags, in order
        self.skipped_nonfinite = 0
        self.epoch = 0

    def monitored(self) -> list[Monitored]:
        return [Monitored(self.monitor, per_batch=self.save_freq != "epoch")] if self.save_best_only else []

    def files(self) -> list[str]:
        return [MODEL_CHECKPOINTS_DIR]

    def bind_run(self, context: RunContext) -> None:
        """In a run directory, full checkpoints go to <run>/model_checkpoints."""
        self.set_saver(context.checkpoint_saver(MODEL_CHECKPOINTS_DIR, self.keep_last))

    def set_saver(self, saver: Saver) -> None:
        self.saver = saver

    def _initial_best(self) -> float:
        if self.initial_value_threshold is not None:
            return float(self.initial_value_threshold)
        return math.inf if self.direction == "min" else -math.inf

    def reset(self) -> None:
        self.best = self._initial_best()
        self.saved, self.skipped_nonfinite = [], 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    batch_end_mode = "boundary"  # saves after every save_freq-th step: the chunks end there

    def next_step_boundary(self, step: int) -> int | None:
        if self.save_freq == "epoch":
            return None
        return (step // self.save_freq + 1) * self.save_freq

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
            self.watch.bind(self.model)
            self.best = self._initial_best()
        watched = [logs.get("loss"), logged(logs, self.monitor)]
        if any(value is not None and not _finite(value) for value in watched):
            self.skipped_nonfinite += 1
            return
        if self.save_best_only:
            current = logged(logs, self.monitor)
            if current is None:  # Keras: warns and saves anyway
                warnings.warn(f"model_checkpoint: can save best only with {self.monitor} available; saving",
                              stacklevel=2)
            else:
                current = float(current)
                if not self.watch.improves(current, self.best):
                    return
                self.best = current
        if self.saver is None:
            raise RuntimeError("model_checkpoint: no saver set; the run code must call set_saver()")
        self.saver(tag, logs)
        self.saved.append(tag)

    def get_state(self) -> tuple[dict[str, Any], Arrays]:
        return {"best": self.best}, {}

    def set_state(self, state: dict[str, Any], arrays: Arrays) -> None:
        self.best = None if state.get("best") is None else float(state["best"])
        self._resumed = True


