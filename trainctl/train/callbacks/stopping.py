"""Callbacks that react to a monitored value: early stopping and reducing the learning rate on a plateau."""

from __future__ import annotations

import math
from typing import Annotated, Any

import numpy as np
from pydantic import Field

from trainctl.config.base import FiniteFloat, NonNegativeFloat, NonNegativeInt, StrictModel, bounded_int
from trainctl.train.callbacks.base import Arrays, register
from trainctl.train.callbacks.monitor import logged, Mode, MonitoringCallback, _copy_weights


# -- early stopping ----------------------------------------------------------------------
@register("early_stopping")
class EarlyStopping(MonitoringCallback):
    """Stop when `monitor` has not improved for `patience` epochs (Keras 3 EarlyStopping).

    An epoch improves when `current - min_delta` beats the best so far (min mode: `current <
    best - min_delta`). With a `baseline`, the patience counter only restarts when the
    value also beats the baseline. With `restore_best_weights`, the weights of the best
    epoch (the first monitored epoch's if none improved) are put back at the end of
    training, whether it stopped early or ran all its epochs, as Keras 3 does (TF.js declares the option but never
    implemented it).
    """

    class Params(StrictModel):
        monitor: str = "val_loss"  # Keras and TF.js default
        min_delta: FiniteFloat = 0.0  # its absolute value is used, as Keras
        patience: NonNegativeInt = 0  # epochs without improvement before stopping
        mode: Mode = "auto"  # auto: infer the direction from the monitor
        baseline: FiniteFloat | None = None  # the value to beat before patience restarts
        restore_best_weights: bool = False
        start_from_epoch: NonNegativeInt = 0  # Keras 3: epochs before monitoring starts
        verbose: bounded_int(ge=0, le=2) = 0  # accepted for TF.js/Keras; the progress display reports the stop

    def setup(self) -> None:
        self.min_delta = abs(float(self.min_delta))
        super().setup()
        self.reset()

    def reset(self) -> None:
        self.wait = 0
        self.stopped_epoch = 0
        self.best: float | None = None
        self.best_epoch = 0
        self.best_weights: dict[str, Any] | None = None
        self.restored_epoch: int | None = None

    def _improves(self, value: float, reference: float | None) -> bool:
        return self.watch.improves(value, reference)  # Keras negates min_delta in min mode: current + delta < best

    def on_epoch_end(self, epoch, logs=None):
        if self.direction is None:
            self.watch.bind(self.model)
        current = logged(logs, self.monitor)
        if current is None or epoch < self.start_from_epoch:
            return
        current = float(current)
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights = _copy_weights(self.model)  # the first monitored epoch is the best so far
            self.best_epoch = epoch
        self.wait += 1
        if self._improves(current, self.best):
            self.best = current
            self.best_epoch = epoch
            if self.restore_best_weights:
                self.best_weights = _copy_weights(self.model)
            if self.baseline is None or self._improves(current, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        # Runs after an early stop and after the last epoch alike (Keras 3). Not at the stop
        # itself: callbacks after this one still see (and may checkpoint) this epoch's weights.
        if self.restore_best_weights and self.best_weights is not None:
            self.model.set_weights(self.best_weights)
            self.restored_epoch = self.best_epoch

    @property
    def message(self) -> str | None:
        """One line for the display: why training stopped early, or None."""
        if not self.stopped_epoch:
            return None
        text = (f"early stopping at epoch {self.stopped_epoch + 1}: {self.monitor} did not improve "
                f"for {self.wait} epoch{'s' if self.wait != 1 else ''}")
        if self.restored_epoch is not None:
            text += f"; restored the weights of epoch {self.best_epoch + 1}"
        return text

    # resume: the counters as JSON, the best weights as arrays
    def get_state(self) -> tuple[dict[str, Any], Arrays]:
        state = {"wait": self.wait, "stopped_epoch": self.stopped_epoch, "best": self.best,
                 "best_epoch": self.best_epoch}
        return state, {f"best_weights/{name}": value for name, value in (self.best_weights or {}).items()}

    def set_state(self, state: dict[str, Any], arrays: Arrays) -> None:
        """Continue from `get_state()` (the counters, and the saved best weights); call before fit."""
        prefix = "best_weights/"
        best_weights = {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)} or None
        self.reset()
        self.wait, self.stopped_epoch = int(state["wait"]), int(state["stopped_epoch"])
        self.best = None if state["best"] is None else float(state["best"])
        self.best_epoch = int(state["best_epoch"])
        self.best_weights = None if best_weights is None else {k: v.copy() for k, v in best_weights.items()}
        self._resumed = True




# -- reduce the learning rate on a plateau ------------------------------------------------
@register("reduce_lr_on_plateau")
class ReduceLROnPlateau(MonitoringCallback):
    """Multiply the optimizer's learning rate by `factor` when `monitor` has not improved by
    more than `min_delta` for `patience` epochs; then wait `cooldown` epochs; never go below
    `min_lr` (Keras ReduceLROnPlateau). Puts the epoch's rate into the logs as `lr`."""

    class Params(StrictModel):
        monitor: str = "val_loss"
        factor: Annotated[float, Field(gt=0, lt=1)] = 0.1  # new_lr = lr * factor
        patience: NonNegativeInt = 10  # epochs without improvement before reducing
        mode: Mode = "auto"
        min_delta: NonNegativeFloat = 1e-4  # smaller changes are not improvements
        cooldown: NonNegativeInt = 0  # epochs after a reduction before counting again
        min_lr: NonNegativeFloat = 0.0  # lower bound on the learning rate
        verbose: bounded_int(ge=0, le=2) = 0  # accepted for Keras; the display shows `lr`

    delta_on = "best"  # Keras ReduceLROnPlateau: current < best - min_delta

    def setup(self) -> None:
        super().setup()
        self.reductions: list[tuple[int, float]] = []  # (epoch, new rate)
        self._restart()

    def _restart(self) -> None:
        self.wait = 0
        self.cooldown_counter = 0
        self.best = math.inf if self.direction != "max" else -math.inf

    def reset(self) -> None:
        self._restart()
        self.reductions = []

    def _improves(self, value: float) -> bool:
        return self.watch.improves(value, self.best)

    def on_epoch_end(self, epoch, logs=None):
        if self.direction is None:
            self.watch.bind(self.model)
            self._restart()
        optimizer = self.model.optimizer
        if logs is not None:
            logs["lr"] = float(optimizer.learning_rate)
        current = logged(logs, self.monitor)
        if current is None:
            return
        current = float(current)
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.wait = 0
        if self._improves(current):
            self.best = current
            self.wait = 0
        elif self.cooldown_counter <= 0:
            self.wait += 1
            if self.wait >= self.patience:
                old_lr = float(optimizer.learning_rate)
                # Keras compares against float32(min_lr), which lies just below min_lr, so at
                # the floor it still "reduces" (to min_lr) and restarts wait and cooldown.
                if old_lr > float(np.float32(self.min_lr)):
                    new_lr = max(old_lr * self.factor, self.min_lr)
                    optimizer.learning_rate = new_lr
                    if new_lr != old_lr:
                        self.reductions.append((epoch, new_lr))
                    self.cooldown_counter = self.cooldown
                    self.wait = 0

    def in_cooldown(self) -> bool:
        return self.cooldown_counter > 0

    def get_state(self) -> tuple[dict[str, Any], Arrays]:
        return {"wait": self.wait, "cooldown_counter": self.cooldown_counter, "best": self.best,
                "learning_rate": float(self.model.optimizer.learning_rate) if self.model is not None else None}, {}

    def set_state(self, state: dict[str, Any], arrays: Arrays) -> None:
        """Continue from `get_state()`; restores the reduced rate too. Call after set_model."""
        self.wait, self.cooldown_counter = int(state["wait"]), int(state["cooldown_counter"])
        self.best = float(state["best"])
        if state.get("learning_rate") is not None and self.model is not None:
            self.model.optimizer.learning_rate = float(state["learning_rate"])
        self._resumed = True


