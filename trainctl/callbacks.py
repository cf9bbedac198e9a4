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

from typing import Any

from trainctl.config.base import StrictModel
from trainctl.registry import Registry

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


class CallbackList(Callback):
    """Fans each event out to its callbacks, in order."""

    def __init__(self, callbacks: list[Callback]):
        super().__init__()
        self.callbacks = list(callbacks)

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
        for callback in self.callbacks:
            callback.on_batch_begin(batch, logs)

    def on_batch_end(self, batch, logs=None):
        for callback in self.callbacks:
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

    def on_epoch_end(self, epoch, logs=None):
        self.epochs.append(epoch)
        for weight in self._weights:
            values = weight.value.reshape(-1).astype(float).tolist()
            self.values.setdefault(weight.name, []).append(values)
            if logs is not None and len(values) == 1:
                logs[weight.name] = values[0]


CALLBACKS.register("weight_history")(WeightHistory)
