"""The Callback base, the list that dispatches events, and the callback registry.

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


CALLBACKS: Registry[type[Callback]] = Registry("callback")
