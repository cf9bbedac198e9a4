"""Callbacks that record training: the in-memory History and per-epoch weight statistics."""

from __future__ import annotations

from trainctl.config.base import StrictModel
from typing import Any

from trainctl.runs.files import WEIGHT_HISTORY_FILE
from trainctl.train.callbacks.base import Arrays, Callback, register


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


@register("weight_history")
class WeightHistory(Callback):
    """Records chosen weights at the end of every epoch (the "basic training loops" guide
    tracks W and b this way). Single-value weights are also put into the epoch logs, so the
    progress display and history.csv show them (`dense_Dense1/kernel 3.0812`)."""

    class Params(StrictModel):
        weights: list[str] | None = None  # weight names; default: every weight
        reference: dict[str, float] = {}  # true values to plot against (e.g. true_w, true_b)

    def setup(self) -> None:
        self.reference = dict(self.reference)
        self.epochs: list[int] = []
        self.values: dict[str, list[list[float]]] = {}

    def _tracked(self):
        weights = {w.name: w for w in self.model.weights}
        if self.weights is None:
            return list(weights.values())
        unknown = [n for n in self.weights if n not in weights]
        if unknown:
            from trainctl.errors import TrainctlError

            raise TrainctlError(f"callbacks.weight_history: unknown weight {unknown[0]!r}; "
                                f"the model has {', '.join(weights)}")
        return [weights[n] for n in self.weights]

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

    def get_state(self) -> tuple[dict[str, Any], Arrays]:
        return {"epochs": self.epochs, "values": self.values}, {}

    def set_state(self, state: dict[str, Any], arrays: Arrays) -> None:
        self.epochs = [int(e) for e in state["epochs"]]
        self.values = {k: [list(v) for v in vals] for k, vals in state["values"].items()}

    def files(self) -> list[str]:
        return [WEIGHT_HISTORY_FILE]

    def end_run(self, run_dir) -> None:
        from trainctl.runs.atomic import atomic_write_json

        atomic_write_json(run_dir.file(WEIGHT_HISTORY_FILE), {
            "epochs": [e + 1 for e in self.epochs], "weights": self.values, "reference": self.reference})

    def on_epoch_end(self, epoch, logs=None):
        for name, values in self._record(epoch):
            if logs is not None and len(values) == 1:
                logs[name] = values[0]


