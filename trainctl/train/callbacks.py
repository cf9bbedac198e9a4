"""Callbacks: everything that watches training (progress, history, checkpoints, early
stopping, LR schedules, NaN guard) is a Callback. The loop in training.py only emits events.

Events and their logs (plain dicts of floats):
- on_train_begin(logs) / on_train_end(logs)
- on_epoch_begin(epoch, logs) / on_epoch_end(epoch, logs): epoch logs hold the epoch's
  size-weighted mean `loss` and metrics, plus `val_loss`, `val_<metric>` when validating.
- on_batch_begin(batch, logs) / on_batch_end(batch, logs): batch logs hold `batch`, `size`
  and that batch's `loss` and metrics, computed before the batch's update (as TF.js).
- on_compile_begin(logs) / on_compile_end(logs): around the first call into cold kernels.

`self.params` (set before on_train_begin): epochs, initial_epoch, steps (batches per epoch,
None for streams of unknown length), samples (or None), batch_size, metrics (log keys).
A callback stops training by setting `self.model.stop_training = True`.
"""

from __future__ import annotations

import csv
import math
import warnings
from pathlib import Path
from typing import Annotated, Any, Callable, Literal

import numpy as np
from pydantic import Field, model_validator

from trainctl.config.base import (FiniteFloat, NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt,
                                  StrictModel)
from trainctl.registry import Registry
from trainctl.nn.schedules import Warmup, cosine_decay, exponential_decay, linear_warmup, step_decay

Logs = dict[str, float]


class Callback:
    def __init__(self) -> None:
        self.model: Any = None
        self.params: dict[str, Any] = {}

    def set_model(self, model: Any) -> None:
        self.model = model

    def set_params(self, params: dict[str, Any]) -> None:
        self.params = params

    def on_train_begin(self, logs: Logs | None = None) -> None: ...
    def on_train_end(self, logs: Logs | None = None) -> None: ...
    def on_epoch_begin(self, epoch: int, logs: Logs | None = None) -> None: ...
    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None: ...
    def on_batch_begin(self, batch: int, logs: Logs | None = None) -> None: ...
    def on_batch_end(self, batch: int, logs: Logs | None = None) -> None: ...
    def on_compile_begin(self, logs: Logs | None = None) -> None: ...
    def on_compile_end(self, logs: Logs | None = None) -> None: ...


def _handles(callback: Callback, event: str) -> bool:
    """Whether `callback` does anything on `event` (its class overrides the base no-op)."""
    return getattr(type(callback), event) is not getattr(Callback, event)


class CallbackList(Callback):
    """Fans each event out to its callbacks, in order."""

    def __init__(self, callbacks: list[Callback]):
        super().__init__()
        self.callbacks = list(callbacks)
        # The per-batch events go only to callbacks that handle them: they run every batch,
        # where a no-op call per callback is a measurable share of a 70 µs step.
        self._batch_begin = [c for c in self.callbacks if _handles(c, "on_batch_begin")]
        self._batch_end = [c for c in self.callbacks if _handles(c, "on_batch_end")]

    @property
    def wants_batch_begin(self) -> bool:
        return bool(self._batch_begin)

    def set_model(self, model: Any) -> None:
        for callback in self.callbacks:
            callback.set_model(model)

    def set_params(self, params: dict[str, Any]) -> None:
        for callback in self.callbacks:
            callback.set_params(params)

    def on_train_begin(self, logs=None):
        for callback in self.callbacks:
            callback.on_train_begin(logs)

    def on_train_end(self, logs=None):
        for callback in self.callbacks:
            callback.on_train_end(logs)

    def on_epoch_begin(self, epoch, logs=None):
        for callback in self.callbacks:
            callback.on_epoch_begin(epoch, logs)

    def on_epoch_end(self, epoch, logs=None):
        for callback in self.callbacks:
            callback.on_epoch_end(epoch, logs)

    def on_batch_begin(self, batch, logs=None):
        for callback in self._batch_begin:
            callback.on_batch_begin(batch, logs)

    def on_batch_end(self, batch, logs=None):
        for callback in self._batch_end:
            callback.on_batch_end(batch, logs)

    def on_compile_begin(self, logs=None):
        for callback in self.callbacks:
            callback.on_compile_begin(logs)

    def on_compile_end(self, logs=None):
        for callback in self.callbacks:
            callback.on_compile_end(logs)


class History(Callback):
    """Per-epoch logs, as `history[key] -> list of values` and `epoch -> list of epoch indices`."""

    def __init__(self) -> None:
        super().__init__()
        self.epoch: list[int] = []
        self.history: dict[str, list[float]] = {}

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(float(value))


CALLBACKS: Registry[type[Callback]] = Registry("callback")


class WeightHistory(Callback):
    """Records chosen weights at the end of every epoch (the "basic training loops" guide
    tracks W and b this way). Single-value weights are also put into the epoch logs, so the
    progress display and history.csv show them (`dense_Dense1/kernel 3.0812`)."""

    class Params(StrictModel):
        weights: list[str] | None = None  # weight names; default: every weight
        reference: dict[str, float] = {}  # true values to plot against (e.g. true_w, true_b)

    def __init__(self, weights: list[str] | None = None, reference: dict[str, float] | None = None):
        super().__init__()
        self.names = weights
        self.reference = dict(reference or {})
        self.epochs: list[int] = []
        self.values: dict[str, list[list[float]]] = {}

    def _tracked(self):
        weights = {w.name: w for w in self.model.weights}
        if self.names is None:
            return list(weights.values())
        unknown = [n for n in self.names if n not in weights]
        if unknown:
            from trainctl.errors import TrainctlError

            raise TrainctlError(f"callbacks.weight_history: unknown weight {unknown[0]!r}; "
                                f"the model has {', '.join(weights)}")
        return [weights[n] for n in self.names]

    def on_train_begin(self, logs=None):
        self._weights = self._tracked()
        if not self.epochs:  # the starting point (epoch 0), as the guide's plot shows W=5, b=0
            self._record(self.params.get("initial_epoch", 0) - 1)

    def _record(self, epoch: int) -> list[tuple[str, list[float]]]:
        self.epochs.append(epoch)
        recorded = []
        for weight in self._weights:
            values = weight.value.reshape(-1).astype(float).tolist()
            self.values.setdefault(weight.name, []).append(values)
            recorded.append((weight.name, values))
        return recorded

    def on_epoch_end(self, epoch, logs=None):
        for name, values in self._record(epoch):
            if logs is not None and len(values) == 1:
                logs[name] = values[0]


CALLBACKS.register("weight_history")(WeightHistory)


# -- monitors --------------------------------------------------------------------------------
# Shared by early_stopping, reduce_lr_on_plateau and model_checkpoint.

def _metric_direction(model: Any, name: str) -> str | None:
    """'max'/'min' from a compiled metric whose log key or name is `name`, else None."""
    for metric in getattr(model, "metrics", None) or []:
        keys = {getattr(metric, attr, None) for attr in ("log_key", "key", "name")}
        if name in keys and hasattr(metric, "greater_is_better"):
            return "max" if metric.greater_is_better else "min"
    return None


def infer_mode(mode: str, monitor: str, model: Any = None) -> str:
    """'min' or 'max'. In 'auto' mode: a loss is minimised (Keras), a compiled metric goes
    the way it declares (Keras 3 `_direction`), and otherwise a name containing 'acc' is
    maximised and anything else minimised (TF.js EarlyStopping)."""
    if mode in ("min", "max"):
        return mode
    name = monitor[4:] if monitor.startswith("val_") else monitor
    if name == "loss" or name.endswith("_loss"):
        return "min"
    direction = _metric_direction(model, name)
    if direction is not None:
        return direction
    return "max" if "acc" in name else "min"


def _check_monitor(callback_id: str, monitor: str, params: dict[str, Any], *, per_batch: bool = False) -> str:
    """Refuse a monitor that training will never log (the usual case: val_loss without
    validation data), instead of silently never acting on it. Returns the logged key to
    read: the monitor itself, or its other spelling (val_acc for val_accuracy and back,
    ce/crossentropy), so a TF.js and a Keras user's monitors both work."""
    from trainctl.errors import TrainctlError
    from trainctl.nn.metrics import metric_key_aliases

    keys = params.get("metrics")
    if keys is None:
        return monitor
    available = list(keys)
    if not per_batch and params.get("do_validation"):
        available += [f"val_{key}" for key in keys]
    if monitor in available:
        return monitor
    for alias in metric_key_aliases(monitor):
        if alias in available:
            return alias
    if monitor.startswith("val_") and monitor[4:] in keys:
        reason = ("is only known at the end of an epoch; use monitor: " + monitor[4:]) if per_batch else \
            "needs validation data (fit.validation_split or data.validation)"
        raise TrainctlError(f"callbacks.{callback_id}.monitor: {monitor!r} {reason}")
    raise TrainctlError(f"callbacks.{callback_id}.monitor: {monitor!r} is not logged; "
                        f"available: {', '.join(available)}")


def _copy_weights(model: Any) -> dict[str, Any]:
    return {name: value.copy() for name, value in model.get_weights().items()}


def _finite(value: Any) -> bool:
    import math

    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


_MODE = Literal["auto", "min", "max"]


# -- early stopping ----------------------------------------------------------------------
class EarlyStopping(Callback):
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
        mode: _MODE = "auto"  # auto: infer the direction from the monitor
        baseline: FiniteFloat | None = None  # the value to beat before patience restarts
        restore_best_weights: bool = False
        start_from_epoch: NonNegativeInt = 0  # Keras 3: epochs before monitoring starts
        verbose: int = 0  # accepted for TF.js/Keras; the progress display reports the stop

    def __init__(self, monitor: str = "val_loss", min_delta: float = 0.0, patience: int = 0,
                 mode: str = "auto", baseline: float | None = None, restore_best_weights: bool = False,
                 start_from_epoch: int = 0, verbose: int = 0):
        super().__init__()
        self.monitor = monitor
        self.min_delta = abs(float(min_delta))
        self.patience = int(patience)
        self.mode = mode
        self.baseline = baseline
        self.restore_best_weights = restore_best_weights
        self.start_from_epoch = int(start_from_epoch)
        self.verbose = verbose
        self.direction: str | None = None
        self._reset()
        self._resumed = False

    def _reset(self) -> None:
        self.wait = 0
        self.stopped_epoch = 0
        self.best: float | None = None
        self.best_epoch = 0
        self.best_weights: dict[str, Any] | None = None
        self.restored_epoch: int | None = None

    def _improves(self, value: float, reference: float | None) -> bool:
        if reference is None:
            return True
        if self.direction == "min":  # Keras negates min_delta in min mode: current + delta < best
            return value + self.min_delta < reference
        return value - self.min_delta > reference

    def on_train_begin(self, logs=None):
        self.monitor = _check_monitor("early_stopping", self.monitor, self.params)
        self.direction = infer_mode(self.mode, self.monitor, self.model)
        if not self._resumed:
            self._reset()
        self._resumed = False

    def on_epoch_end(self, epoch, logs=None):
        if self.direction is None:
            self.direction = infer_mode(self.mode, self.monitor, self.model)
        current = (logs or {}).get(self.monitor)
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
    def get_state(self) -> dict[str, Any]:
        return {"wait": self.wait, "stopped_epoch": self.stopped_epoch, "best": self.best,
                "best_epoch": self.best_epoch}

    def set_state(self, state: dict[str, Any], best_weights: dict[str, Any] | None = None) -> None:
        """Continue from `get_state()` (and the saved `best_weights`); call before fit."""
        self._reset()
        self.wait, self.stopped_epoch = int(state["wait"]), int(state["stopped_epoch"])
        self.best = None if state["best"] is None else float(state["best"])
        self.best_epoch = int(state["best_epoch"])
        self.best_weights = None if best_weights is None else {k: v.copy() for k, v in best_weights.items()}
        self._resumed = True


CALLBACKS.register("early_stopping")(EarlyStopping)


# -- reduce the learning rate on a plateau ------------------------------------------------
class ReduceLROnPlateau(Callback):
    """Multiply the optimizer's learning rate by `factor` when `monitor` has not improved by
    more than `min_delta` for `patience` epochs; then wait `cooldown` epochs; never go below
    `min_lr` (Keras ReduceLROnPlateau). Puts the epoch's rate into the logs as `lr`."""

    class Params(StrictModel):
        monitor: str = "val_loss"
        factor: Annotated[float, Field(gt=0, lt=1)] = 0.1  # new_lr = lr * factor
        patience: NonNegativeInt = 10  # epochs without improvement before reducing
        mode: _MODE = "auto"
        min_delta: NonNegativeFloat = 1e-4  # smaller changes are not improvements
        cooldown: NonNegativeInt = 0  # epochs after a reduction before counting again
        min_lr: NonNegativeFloat = 0.0  # lower bound on the learning rate
        verbose: int = 0  # accepted for Keras; the display shows `lr`

    def __init__(self, monitor: str = "val_loss", factor: float = 0.1, patience: int = 10,
                 mode: str = "auto", min_delta: float = 1e-4, cooldown: int = 0, min_lr: float = 0.0,
                 verbose: int = 0):
        super().__init__()
        if not 0 < factor < 1:
            raise ValueError(f"reduce_lr_on_plateau: factor must be in (0, 1), got {factor}")
        self.monitor, self.factor, self.patience = monitor, float(factor), int(patience)
        self.mode, self.min_delta, self.cooldown = mode, float(min_delta), int(cooldown)
        self.min_lr, self.verbose = float(min_lr), verbose
        self.direction: str | None = None
        self.reductions: list[tuple[int, float]] = []  # (epoch, new rate)
        self._resumed = False
        self._reset()

    def _reset(self) -> None:
        self.wait = 0
        self.cooldown_counter = 0
        self.best = math.inf if self.direction != "max" else -math.inf

    def _improves(self, value: float) -> bool:
        if self.direction == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def on_train_begin(self, logs=None):
        self.monitor = _check_monitor("reduce_lr_on_plateau", self.monitor, self.params)
        self.direction = infer_mode(self.mode, self.monitor, self.model)
        if not self._resumed:
            self._reset()
            self.reductions = []
        self._resumed = False

    def on_epoch_end(self, epoch, logs=None):
        if self.direction is None:
            self.direction = infer_mode(self.mode, self.monitor, self.model)
            self._reset()
        optimizer = self.model.optimizer
        if logs is not None:
            logs["lr"] = float(optimizer.learning_rate)
        current = (logs or {}).get(self.monitor)
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

    def get_state(self) -> dict[str, Any]:
        return {"wait": self.wait, "cooldown_counter": self.cooldown_counter, "best": self.best,
                "learning_rate": float(self.model.optimizer.learning_rate) if self.model is not None else None}

    def set_state(self, state: dict[str, Any]) -> None:
        """Continue from `get_state()`; restores the reduced rate too. Call after set_model."""
        self.wait, self.cooldown_counter = int(state["wait"]), int(state["cooldown_counter"])
        self.best = float(state["best"])
        if state.get("learning_rate") is not None and self.model is not None:
            self.model.optimizer.learning_rate = float(state["learning_rate"])
        self._resumed = True


CALLBACKS.register("reduce_lr_on_plateau")(ReduceLROnPlateau)


# -- learning-rate schedules --------------------------------------------------------------
class _Schedule(Callback):
    """Sets `model.optimizer.learning_rate` before every batch from the global step (the
    optimizer's `iterations`: exact across resume). `initial_learning_rate` defaults to the
    optimizer's configured rate. Puts the last batch's rate into the epoch logs as `lr`.

    Use one schedule per run (the last one in the list wins each batch); to warm up and
    then decay, give the decay schedule `warmup_steps`.
    """

    def __init__(self, initial_learning_rate: float | None = None, warmup_steps: int = 0,
                 warmup_initial_learning_rate: float = 0.0):
        super().__init__()
        self.initial_learning_rate = initial_learning_rate
        self.warmup = Warmup(int(warmup_steps), float(warmup_initial_learning_rate))
        self.epoch = 0

    def base_rate(self) -> float:
        if self.initial_learning_rate is not None:
            return float(self.initial_learning_rate)
        optimizer = self.model.optimizer
        configured = getattr(getattr(optimizer, "params", None), "learning_rate", None)
        return float(configured if configured is not None else optimizer.learning_rate)

    def decay(self, step: int, epoch: int, base: float) -> float:
        raise NotImplementedError

    def rate(self, step: int, epoch: int = 0) -> float:
        """The learning rate for global step `step` (0-based) in epoch `epoch`."""
        base = self.base_rate()
        if self.warmup.active(step):
            return self.warmup.rate(step, base)
        return self.decay(step - self.warmup.steps, epoch, base)

    def on_train_begin(self, logs=None):
        self._base = self.base_rate()

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_batch_begin(self, batch, logs=None):
        optimizer = self.model.optimizer
        optimizer.learning_rate = self.rate(int(optimizer.iterations), self.epoch)

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["lr"] = float(self.model.optimizer.learning_rate)


class _DecayParams(StrictModel):
    initial_learning_rate: PositiveFloat | None = None  # default: the optimizer's learning_rate
    warmup_steps: NonNegativeInt = 0  # linear warmup before the decay starts
    warmup_initial_learning_rate: NonNegativeFloat = 0.0  # the rate at step 0 of the warmup


class ExponentialDecay(_Schedule):
    """tf.keras ExponentialDecay: lr = initial * decay_rate ** (step / decay_steps)."""

    class Params(_DecayParams):
        decay_steps: PositiveInt
        decay_rate: PositiveFloat
        staircase: bool = False  # floor the exponent: decay in discrete jumps

    def __init__(self, decay_steps: int, decay_rate: float, staircase: bool = False, **common: Any):
        super().__init__(**common)
        self.decay_steps, self.decay_rate, self.staircase = int(decay_steps), float(decay_rate), staircase

    def decay(self, step, epoch, base):
        return exponential_decay(step, base, self.decay_steps, self.decay_rate, self.staircase)


class CosineDecay(_Schedule):
    """tf.keras CosineDecay: from initial down to initial * alpha over decay_steps, then flat."""

    class Params(_DecayParams):
        decay_steps: PositiveInt
        alpha: Annotated[float, Field(ge=0, le=1)] = 0.0  # final rate / initial

    def __init__(self, decay_steps: int, alpha: float = 0.0, **common: Any):
        super().__init__(**common)
        self.decay_steps, self.alpha = int(decay_steps), float(alpha)

    def decay(self, step, epoch, base):
        return cosine_decay(step, base, self.decay_steps, self.alpha)


class StepDecay(_Schedule):
    """lr = initial * factor ** floor(n / step_size), n counting epochs or steps (`unit`).
    With warmup, the step count of the decay starts after the warmup."""

    class Params(_DecayParams):
        step_size: PositiveInt  # epochs (or steps) between drops
        factor: PositiveFloat = 0.5  # the multiplier at each drop
        unit: Literal["epochs", "steps"] = "epochs"

    def __init__(self, step_size: int, factor: float = 0.5, unit: str = "epochs", **common: Any):
        super().__init__(**common)
        self.step_size, self.factor, self.unit = int(step_size), float(factor), unit

    def decay(self, step, epoch, base):
        return step_decay(step if self.unit == "steps" else epoch, base, self.factor, self.step_size)


class LinearWarmup(Callback):
    """Rise linearly from `initial_learning_rate` (at step 0) to `target_learning_rate` (at
    step `warmup_steps`), then hand over: the rate is set to the target once and left alone
    (reduce_lr_on_plateau may act on it). For warmup followed by a decay, give the decay
    schedule `warmup_steps` instead."""

    class Params(StrictModel):
        warmup_steps: PositiveInt
        initial_learning_rate: NonNegativeFloat = 0.0  # the rate at step 0
        target_learning_rate: PositiveFloat | None = None  # default: the optimizer's learning_rate

    def __init__(self, warmup_steps: int, initial_learning_rate: float = 0.0,
                 target_learning_rate: float | None = None):
        super().__init__()
        self.warmup_steps = int(warmup_steps)
        self.initial_learning_rate = float(initial_learning_rate)
        self.target_learning_rate = target_learning_rate

    def target(self) -> float:
        if self.target_learning_rate is not None:
            return float(self.target_learning_rate)
        optimizer = self.model.optimizer
        configured = getattr(getattr(optimizer, "params", None), "learning_rate", None)
        return float(configured if configured is not None else optimizer.learning_rate)

    def on_train_begin(self, logs=None):
        self._target = self.target()

    def on_batch_begin(self, batch, logs=None):
        optimizer = self.model.optimizer
        step = int(optimizer.iterations)
        if step <= self.warmup_steps:
            optimizer.learning_rate = linear_warmup(step, self.warmup_steps, self.initial_learning_rate,
                                                    self._target)

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["lr"] = float(self.model.optimizer.learning_rate)


CALLBACKS.register("exponential_decay")(ExponentialDecay)
CALLBACKS.register("cosine_decay")(CosineDecay)
CALLBACKS.register("step_decay")(StepDecay)
CALLBACKS.register("linear_warmup")(LinearWarmup)


# -- CSV log ----------------------------------------------------------------------------
class CSVLogger(Callback):
    """One row per epoch (Keras CSVLogger): `epoch` (0-based, as Keras) then the log keys
    sorted, `NA` for a key an epoch lacks. A relative `filename` is taken relative to
    `base_dir` when the run code sets it (the run directory), else the working directory."""

    class Params(StrictModel):
        filename: str
        separator: Annotated[str, Field(min_length=1, max_length=1)] = ","
        append: bool = False  # add to an existing file instead of overwriting it

    def __init__(self, filename: str, separator: str = ",", append: bool = False):
        super().__init__()
        self.filename, self.separator, self.append = filename, separator, append
        self.base_dir: Path | None = None
        self.keys: list[str] | None = None
        self._file: Any = None
        self._writer: Any = None

    @property
    def path(self) -> Path:
        path = Path(self.filename)
        return path if path.is_absolute() or self.base_dir is None else Path(self.base_dir) / path

    def on_train_begin(self, logs=None):
        from trainctl.errors import TrainctlError

        path = self.path
        self._write_header = True
        try:
            if self.append and path.exists():
                with open(path, encoding="utf-8") as existing:
                    self._write_header = not existing.readline()
            self._file = open(path, "a" if self.append else "w", encoding="utf-8", newline="")
        except OSError as error:
            raise TrainctlError(f"callbacks.csv_logger: cannot open {path}: {error.strerror or error}") from None
        self.keys, self._writer = None, None

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.keys is None:
            self.keys = sorted(logs)
            if self.params.get("do_validation") and not any(k.startswith("val_") for k in self.keys):
                # validation_freq > 1: the first epoch has no val_ keys, later ones do
                self.keys += [f"val_{k}" for k in self.keys]
        if self._writer is None:
            self._writer = csv.writer(self._file, delimiter=self.separator, lineterminator="\n")
            if self._write_header:
                self._writer.writerow(["epoch", *self.keys])
        self._writer.writerow([epoch, *(logs.get(key, "NA") for key in self.keys)])
        self._file.flush()

    def on_train_end(self, logs=None):
        if self._file is not None:
            self._file.close()
        self._file, self._writer = None, None


CALLBACKS.register("csv_logger")(CSVLogger)


# -- stop on a non-finite loss -------------------------------------------------------
class TerminateOnNaN(Callback):
    """Stop at the first batch whose loss is NaN or infinite (Keras TerminateOnNaN).
    `stopped_at` is (epoch, batch), both 0-based; `message` says it in the display's 1-based
    numbering."""

    class Params(StrictModel):
        pass

    def __init__(self) -> None:
        super().__init__()
        self.stopped_at: tuple[int, int] | None = None
        self.message: str | None = None
        self.epoch = 0

    def on_train_begin(self, logs=None):
        self.stopped_at, self.message = None, None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is None or _finite(loss) or self.stopped_at is not None:
            return
        self.stopped_at = (self.epoch, batch)
        self.message = (f"training stopped: the loss became {float(loss)} at epoch {self.epoch + 1}, "
                        f"batch {batch + 1}; try a smaller learning rate")
        self.model.stop_training = True


CALLBACKS.register("terminate_on_nan", "TerminateOnNaN")(TerminateOnNaN)


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


def check_monitors(callbacks: list[Callback], log_keys: list[str], do_validation: bool) -> None:
    """Before any work: refuse a monitor no epoch will log (TrainctlError naming the callback).
    `log_keys` is what each batch logs (loss, then metric keys), as params['metrics']."""
    params = {"metrics": list(log_keys), "do_validation": do_validation}
    for callback in callbacks:
        if isinstance(callback, EarlyStopping):
            _check_monitor("early_stopping", callback.monitor, params)
        elif isinstance(callback, ReduceLROnPlateau):
            _check_monitor("reduce_lr_on_plateau", callback.monitor, params)
        elif isinstance(callback, ModelCheckpoint) and callback.save_best_only:
            _check_monitor("model_checkpoint", callback.monitor, params, per_batch=callback.save_freq != "epoch")
