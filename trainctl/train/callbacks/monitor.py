"""The monitored value of a callback: its direction (min/max/auto) and the checks made before training."""

from __future__ import annotations

import math
from typing import Any, Literal

from trainctl.train.callbacks.base import Callback


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

    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


_MODE = Literal["auto", "min", "max"]


def check_monitors(callbacks: list[Callback], log_keys: list[str], do_validation: bool) -> None:
    """Before any work: refuse a monitor no epoch will log (TrainctlError naming the callback).
    `log_keys` is what each batch logs (loss, then metric keys), as params['metrics']."""
    from trainctl.train.callbacks.checkpoint import ModelCheckpoint
    from trainctl.train.callbacks.stopping import EarlyStopping, ReduceLROnPlateau

    params = {"metrics": list(log_keys), "do_validation": do_validation}
    for callback in callbacks:
        if isinstance(callback, EarlyStopping):
            _check_monitor("early_stopping", callback.monitor, params)
        elif isinstance(callback, ReduceLROnPlateau):
            _check_monitor("reduce_lr_on_plateau", callback.monitor, params)
        elif isinstance(callback, ModelCheckpoint) and callback.save_best_only:
            _check_monitor("model_checkpoint", callback.monitor, params, per_batch=callback.save_freq != "epoch")
