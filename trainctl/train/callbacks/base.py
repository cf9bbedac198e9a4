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

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar

import numpy as np

from trainctl.registry import Registry

Logs = dict[str, float]
Arrays = dict[str, np.ndarray]


@dataclass(frozen=True)
class Monitored:
    """A log value a callback reads: `name` (e.g. val_loss); `per_batch` when it is read from
    the batch logs (which never hold val_ values)."""

    name: str
    per_batch: bool = False


@dataclass(frozen=True)
class RunContext:
    """What a callback is told when it runs inside a run directory (not for a plain fit):
    the directory, the epoch a resume starts from (None for a fresh run), and a factory of
    savers that write full checkpoints into a directory of the run, keeping `keep_last`."""

    path: Path
    resumed_epoch: int | None
    checkpoint_saver: Callable[[str, int], Callable[[str, dict[str, Any]], Any]]


class Callback:
    """Base of everything that watches training. Every hook has a default, so no caller asks
    a callback what it is:

    - `Params`: the options of a registered callback, declared once; `__init__` validates
      keyword (or positional, in field order) options against it, sets each as an attribute
      and calls `setup()` for the state derived from them.
    - `get_state() -> (json, arrays)` / `set_state(json, arrays)`: what a resume must carry.
    - `monitored()`: the log values it reads, checked against what training logs before any
      work (`check_monitors`).
    - `files()`: the names it writes inside the run directory; `bind_run(context)` before
      training in a run directory, `end_run(run_dir)` after it (final files).
    - `message`: one line for the run's report (why it stopped early); `failure`: a reason
      the run failed (a non-finite loss), or None; `restored_epoch`: the epoch whose weights
      it put back at the end (the run reports that epoch's metrics), or None.
    """

    type_id: ClassVar[str] = ""  # the registry id, set by `register`
    Params: ClassVar[type | None] = None

    def __init__(self, *args: Any, **options: Any) -> None:
        self.model: Any = None
        self.params: dict[str, Any] = {}
        if self.Params is None:
            if args or options:
                raise TypeError(f"{type(self).__name__} takes no options")
        else:
            fields = list(self.Params.model_fields)
            if len(args) > len(fields):
                raise TypeError(f"{type(self).__name__} takes at most {len(fields)} positional options")
            for name, value in zip(fields, args):
                if name in options:
                    raise TypeError(f"{type(self).__name__}: {name} given twice")
                options[name] = value
            validated = self.Params.model_validate(options)
            for name in fields:
                setattr(self, name, getattr(validated, name))
        self.setup()

    def setup(self) -> None:
        """State derived from the options (counters, buffers); called by `__init__`."""

    def set_model(self, model: Any) -> None:
        self.model = model

    def set_params(self, params: dict[str, Any]) -> None:
        self.params = params

    # -- declared capabilities, with defaults
    def get_state(self) -> tuple[dict[str, Any], Arrays]:
        """What a resume needs: JSON-able values and named arrays."""
        return {}, {}

    def set_state(self, state: dict[str, Any], arrays: Arrays) -> None:
        """Continue from `get_state()`'s output; called after `set_model`, before fit."""

    def monitored(self) -> list[Monitored]:
        return []

    def files(self) -> list[str]:
        """Names (relative to the run directory) this callback writes there."""
        return []

    def bind_run(self, context: RunContext) -> None: ...
    def end_run(self, run_dir: Any) -> None: ...

    message: str | None = None
    failure: str | None = None
    restored_epoch: int | None = None  # 0-based epoch whose weights the callback restored (early stopping)

    # How on_batch_end may be called when batches run in compiled chunks (fit's
    # steps_per_execution): "every" — right after each batch, the model as of that batch
    # (chunks of one step; the safe default for any callback that handles batch events);
    # "replay" — each batch's logs, in order, after the chunk has run (it reads logs only);
    # "boundary" — only at chunk ends, with the chunk's last batch; `next_step_boundary`
    # names the optimizer steps after which it must be called.
    batch_end_mode: str = "every"

    def next_step_boundary(self, step: int) -> int | None:
        """The first optimizer step > `step` after which this callback must see the model
        (a "boundary" callback saving every N steps), or None."""
        return None

    # -- events
    def on_train_begin(self, logs: Logs | None = None) -> None: ...
    def on_train_end(self, logs: Logs | None = None) -> None: ...
    def on_epoch_begin(self, epoch: int, logs: Logs | None = None) -> None: ...
    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None: ...
    def on_batch_begin(self, batch: int, logs: Logs | None = None) -> None: ...
    def on_batch_end(self, batch: int, logs: Logs | None = None) -> None: ...
    def on_compile_begin(self, logs: Logs | None = None) -> None: ...
    def on_compile_end(self, logs: Logs | None = None) -> None: ...


def configured_rate(optimizer: Any) -> float:
    """The optimizer's learning rate as configured (schedules and resume start from it), not
    the live one a schedule or plateau has set."""
    configured = getattr(getattr(optimizer, "params", None), "learning_rate", None)
    return float(configured if configured is not None else optimizer.learning_rate)


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
        self._replayed = [c for c in self._batch_end if c.batch_end_mode == "replay"]

    @property
    def wants_batch_begin(self) -> bool:
        return bool(self._batch_begin)

    @property
    def needs_every_batch(self) -> bool:
        """A callback must run between every two steps (no compiled chunks of more than one)."""
        return bool(self._batch_begin) or any(c.batch_end_mode == "every" for c in self._batch_end)

    @property
    def replays_batches(self) -> bool:
        """Whether on_chunk_end reads every batch's logs (else only the last batch's)."""
        return bool(self._replayed)

    def next_step_boundary(self, step: int) -> int | None:
        boundaries = [b for b in (c.next_step_boundary(step) for c in self._batch_end) if b is not None]
        return min(boundaries) if boundaries else None

    def on_chunk_end(self, batches: list[tuple[int, dict]]) -> None:
        """After a compiled chunk: replay callbacks get every batch's logs; at the last batch
        every batch-end callback runs, in list order."""
        replayed = self._replayed
        for batch, logs in batches[:-1]:
            for callback in replayed:
                callback.on_batch_end(batch, logs)
        batch, logs = batches[-1]
        for callback in self._batch_end:
            callback.on_batch_end(batch, logs)

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


def register(name: str, *aliases: str) -> Callable[[type[Callback]], type[Callback]]:
    """Register a callback class under `name` (and aliases) and record its id on the class."""

    def add(cls: type[Callback]) -> type[Callback]:
        cls.type_id = name
        return CALLBACKS.register(name, *aliases)(cls)

    return add
