"""One monitored value: its direction, the best so far and the improvement test.

Used by early stopping, plateau, model checkpoints, and by experiments and `compare` when they
rank runs, so "which way is better" is decided in one place. Before any work, `check_monitors`
refuses a monitored value training will never log, at its place in the config.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Iterable, Literal

from trainctl.train.callbacks.base import Callback, Monitored

Mode = Literal["auto", "min", "max"]
# In auto mode a name holding one of these is maximised (Keras: accuracy, precision, recall,
# AUC and R² grow as a model gets better); anything else, and every loss, is minimised.
MAXIMISED = ("acc", "precision", "recall", "auc", "r2")


def _metric_direction(model: Any, name: str) -> str | None:
    """'max'/'min' from a compiled metric whose log key or name is `name`, else None."""
    for metric in getattr(model, "metrics", None) or []:
        keys = {getattr(metric, attr, None) for attr in ("log_key", "key", "name")}
        if name in keys and hasattr(metric, "greater_is_better"):
            return "max" if metric.greater_is_better else "min"
    return None


def infer_mode(mode: str, monitor: str, model: Any = None) -> str:
    """'min' or 'max'. In 'auto' mode: a loss is minimised (Keras), a compiled metric goes
    the way it declares (Keras 3 `_direction`), and otherwise a name containing acc,
    precision, recall, auc or r2 is maximised and anything else minimised."""
    if mode in ("min", "max"):
        return mode
    name = monitor[4:] if monitor.startswith("val_") else monitor
    if name == "loss" or name.endswith("_loss"):
        return "min"
    direction = _metric_direction(model, name)
    if direction is not None:
        return direction
    return "max" if any(part in name for part in MAXIMISED) else "min"


class Monitor:
    """The direction and improvement test of one monitored log value (the callback keeps
    its best, which it saves for a resume).

    `min_delta` is the least change that counts as an improvement. Keras states it two
    ways, kept exactly: on the current value (`delta_on="value"`, EarlyStopping: `current +
    delta < best` when minimising) or on the best (`delta_on="best"`, ReduceLROnPlateau:
    `current < best - delta`)."""

    def __init__(self, name: str, mode: str = "auto", min_delta: float = 0.0,
                 delta_on: Literal["value", "best"] = "value"):
        self.name, self.mode, self.min_delta, self.delta_on = name, mode, float(min_delta), delta_on
        self.direction: str | None = mode if mode in ("min", "max") else None

    def bind(self, model: Any = None) -> str:
        """Fix the direction (auto mode asks the model's compiled metrics)."""
        self.direction = infer_mode(self.mode, self.name, model)
        return self.direction

    @property
    def worst(self) -> float:
        """The starting best: nothing is worse."""
        return math.inf if self.direction == "min" else -math.inf

    def improves(self, value: float, reference: float | None) -> bool:
        """Whether `value` beats `reference` (None, nothing yet, is always beaten)."""
        if reference is None:
            return True
        d = self.min_delta
        if self.direction == "min":
            return value + d < reference if self.delta_on == "value" else value < reference - d
        return value - d > reference if self.delta_on == "value" else value > reference + d

    def value(self, logs: dict[str, Any] | None) -> float | None:
        logs = logs or {}
        current = logs.get(self.name)
        if current is None:  # a TF.js user's val_acc where the log says val_accuracy, and back
            from trainctl.nn.metrics import metric_key_aliases

            current = next((logs[a] for a in metric_key_aliases(self.name) if a in logs), None)
        return None if current is None else float(current)

    def sort_key(self, value: float) -> float:
        """Ascending order of this key puts the best value first."""
        return value if self.direction == "min" else -value

    def best_of(self, items: Iterable[Any], value=lambda item: item) -> Any:
        """The item whose value is best (NaN values never win), or None."""
        candidates = [item for item in items if not math.isnan(value(item))]
        return min(candidates, key=lambda item: self.sort_key(value(item))) if candidates else None


def ranking_monitor(metric: str, mode: str | None) -> Monitor:
    """The monitor experiments and `compare` rank runs by: `mode` if given, else the metric
    name's direction (so val_accuracy is maximised)."""
    monitor = Monitor(metric, mode or "auto")
    monitor.bind()
    return monitor


def logged(logs: dict[str, Any] | None, name: str) -> Any:
    """logs[name], or the value under its other spelling (val_acc / val_accuracy, ce / crossentropy)."""
    logs = logs or {}
    if name in logs:
        return logs[name]
    from trainctl.nn.metrics import metric_key_aliases

    return next((logs[a] for a in metric_key_aliases(name) if a in logs), None)


def _check_monitor(callback_id: str, monitor: str, params: dict[str, Any], *, per_batch: bool = False) -> str | None:
    """Why a monitored value will never be logged (the usual case: val_loss without
    validation data), or None when training logs it."""
    keys = params.get("metrics")
    if keys is None:
        return None
    available = list(keys)
    if not per_batch and params.get("do_validation"):
        available += [f"val_{key}" for key in keys]
    if monitor in available:
        return None
    from trainctl.nn.metrics import metric_key_aliases

    if any(alias in available for alias in metric_key_aliases(monitor)):
        return None  # the other spelling (val_acc / val_accuracy, ce / crossentropy) is logged: Monitor.value reads it
    if monitor.startswith("val_") and monitor[4:] in keys:
        reason = ("is only known at the end of an epoch; use monitor: " + monitor[4:]) if per_batch else \
            "needs validation data (fit.validation_split or data.validation)"
        return f"{monitor!r} {reason}"
    return f"{monitor!r} is not logged; available: {', '.join(available)}"


def check_monitor(callback: Callback, params: dict[str, Any]) -> None:
    """At on_train_begin: refuse a monitored value this fit will not log."""
    problems = [problem for watched in callback.monitored()
                if (problem := _check_monitor(callback.type_id, watched.name, params, per_batch=watched.per_batch))]
    if problems:
        from trainctl.errors import TrainctlError

        raise TrainctlError(f"callbacks.{callback.type_id}.monitor: {problems[0]}")


def check_monitors(callbacks: list[Callback], log_keys: list[str], do_validation: bool, loaded: Any = None) -> None:
    """Before any work: refuse a monitored value no epoch will log. With `loaded` (the config
    the callbacks came from, in order) the problem is located at the callback's monitor."""
    from trainctl.errors import TrainctlError

    params = {"metrics": list(log_keys), "do_validation": do_validation}
    problems = []
    for index, callback in enumerate(callbacks):
        for watched in callback.monitored():
            problem = _check_monitor(callback.type_id, watched.name, params, per_batch=watched.per_batch)
            if problem:
                problems.append((index, callback.type_id, problem))
    if not problems:
        return
    if loaded is None:
        index, type_id, problem = problems[0]
        raise TrainctlError(f"callbacks.{type_id}.monitor: {problem}")
    from trainctl.config.problems import raise_problems

    raise_problems([loaded.problem(f"callbacks.{index}.monitor", problem, shown=f"callbacks.{type_id}.monitor")
                    for index, type_id, problem in problems])


class MonitoringCallback(Callback):
    """A callback acting on one monitored value: `self.watch` is its Monitor (from the options
    monitor, mode and min_delta). At on_train_begin the value is checked against what
    training logs and `reset()` starts the counters, unless `set_state` restored them."""

    delta_on: ClassVar[Literal["value", "best"]] = "value"

    def setup(self) -> None:
        self.watch = Monitor(self.monitor, self.mode, getattr(self, "min_delta", 0.0), self.delta_on)
        self._resumed = False

    @property
    def direction(self) -> str | None:
        return self.watch.direction

    def monitored(self) -> list[Monitored]:
        return [Monitored(self.monitor)]

    def reset(self) -> None:
        """The counters and best value of a fresh start."""

    def on_train_begin(self, logs=None):
        check_monitor(self, self.params)
        self.watch.bind(self.model)
        if not self._resumed:
            self.reset()
        self._resumed = False


def _copy_weights(model: Any) -> dict[str, Any]:
    return {name: value.copy() for name, value in model.get_weights().items()}


def _finite(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False
