"""Metrics: the METRICS registry, TF.js's 'accuracy'/'crossentropy' resolution, batch values.

A metric's value on a batch is the TF.js metric function on that batch, averaged over
its rows (TF.js `mean(metricFn(yTrue, yPred))`); precision, recall and r2 are whole-batch
ratios. Epoch values are size-weighted means of batch values, computed by the training
loop's EpochAccumulator (train/epoch.py) as TF.js's BaseLogger does.

numba is imported on the first `compute`, never at import.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from trainctl.errors import DataError
from trainctl.registry import Registry, snake_case


_FLOAT32 = np.dtype(np.float32)
_FLOAT64 = np.dtype(np.float64)
_kernel_for: Any = None
_codes: dict[str, int] = {}


def _load_kernel() -> Any:
    global _kernel_for
    if _kernel_for is None:
        from trainctl.kernels.metrics import METRIC_CODES, metric_value_for

        _codes.update(METRIC_CODES)
        _kernel_for = metric_value_for
    return _kernel_for


class Metric:
    """One batch metric. `sparse_targets`: y_true holds class indices `[..., 1]`, not
    output-shaped targets. `greater_is_better` tells monitors which way is improvement.
    A metric with options (configured_metrics.py) sets `Params` (their pydantic model) and
    returns a copy with given options from `configured(params)`."""

    Params: Any = None  # no options
    compiled_ok = True  # metric_value computes it inside the compiled training loop (train/compiled.py)

    def __init__(self, name: str, greater_is_better: bool, sparse_targets: bool, summary: str):
        self.name = name
        self.greater_is_better = greater_is_better
        self.sparse_targets = sparse_targets
        self.summary = summary
        self._code = -1

    @property
    def code(self) -> int:
        """The kernel's int code for this metric (loads the kernels, and so numba)."""
        if self._code < 0:
            _load_kernel()
            self._code = _codes[self.name]
        return self._code

    def compute(self, y_true: np.ndarray, y_pred: np.ndarray) -> float:
        """The metric on one batch. y_pred [n, ..., k]; y_true the same shape, or for
        sparse metrics [n, ..., 1] / [n, ...] float class indices. N-D batches are taken
        as 2-D [rows, k] over the last axis. Returns a Python float."""
        code = self._code if self._code >= 0 else self.code
        y_true2d, y_pred2d = _as_2d(self, y_true, y_pred)
        return float(_kernel_for(code)(code, y_true2d, y_pred2d))  # compiled for this metric only

    def configured(self, params) -> "Metric":
        raise NotImplementedError(f"metric {self.name!r} takes no options")

    def __repr__(self) -> str:
        return f"Metric({self.name!r})"


class ShorthandMetric(Metric):
    """'accuracy' / 'crossentropy': which concrete metric depends on the loss and output.

    `resolve_metric` picks it as TF.js training.ts does. Computed directly (without a
    loss to go by), the choice is made from the array shapes: a 1-wide output is binary,
    1-wide targets under a wider output are sparse labels, anything else categorical."""

    def __init__(self, name: str, variants: dict[str, str], greater_is_better: bool, summary: str):
        super().__init__(name, greater_is_better, False, summary)
        self.variants = variants

    @property
    def code(self) -> int:
        raise TypeError(f"{self.name!r} is a shorthand; resolve it with resolve_metric first")

    def compute(self, y_true: np.ndarray, y_pred: np.ndarray) -> float:
        y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
        width = y_pred.shape[-1] if y_pred.ndim else 1
        true_width = y_true.shape[-1] if y_true.ndim == y_pred.ndim and y_true.ndim else 1
        if width == 1:
            kind = "binary"
        elif true_width == 1:
            kind = "sparse"
        else:
            kind = "categorical"
        return METRICS.get(self.variants[kind]).compute(y_true, y_pred)

    def __repr__(self) -> str:
        return f"ShorthandMetric({self.name!r})"


METRICS: Registry[Metric] = Registry("metric")


def _register(name: str, *aliases: str, greater_is_better: bool, sparse: bool = False, summary: str) -> None:
    METRICS.register(name, *aliases)(Metric(name, greater_is_better, sparse, summary))


_register("binary_accuracy", greater_is_better=True,
          summary="share of outputs where (y_pred > 0.5) equals y_true")
_register("categorical_accuracy", greater_is_better=True,
          summary="share of rows where argmax(y_pred) equals argmax(y_true)")
_register("sparse_categorical_accuracy", greater_is_better=True, sparse=True,
          summary="share of rows where argmax(y_pred) equals the class index y_true")
_register("mean_squared_error", "mse", greater_is_better=False,
          summary="mean of (y_pred - y_true)^2")
_register("mean_absolute_error", "mae", greater_is_better=False,
          summary="mean of |y_pred - y_true|")
_register("mean_absolute_percentage_error", "mape", greater_is_better=False,
          summary="100 * mean of |(y_true - y_pred) / max(|y_true|, 1e-7)|")
_register("cosine_proximity", "cosine", greater_is_better=False,
          summary="-cosine similarity of y_true and y_pred along the last axis")
_register("binary_crossentropy", greater_is_better=False,
          summary="TF.js binary crossentropy, y_pred clipped to [1e-7, 1 - 1e-7]")
_register("categorical_crossentropy", greater_is_better=False,
          summary="TF.js categorical crossentropy, rows rescaled to sum 1 and clipped")
_register("sparse_categorical_crossentropy", greater_is_better=False, sparse=True,
          summary="categorical crossentropy against class-index targets")
_register("r2_score", greater_is_better=True,
          summary="Keras R2Score: 1 - SS_res / SS_tot per output column over the batch, averaged")

def _as_2d(metric: Metric, y_true: Any, y_pred: Any) -> tuple[np.ndarray, np.ndarray]:
    # Fast path first: the loop's own 2-D float batches pass through untouched.
    if type(y_pred) is np.ndarray and type(y_true) is np.ndarray and y_pred.ndim == 2 and y_true.ndim == 2:
        kind = y_pred.dtype
        if (kind is _FLOAT32 or kind is _FLOAT64) and y_true.dtype is kind:
            rows, width = y_pred.shape
            if y_true.shape[0] == rows and y_true.shape[1] == (1 if metric.sparse_targets else width) and width:
                return y_true, y_pred
    return _as_2d_general(metric, y_true, y_pred)


def _as_2d_general(metric: Metric, y_true: Any, y_pred: Any) -> tuple[np.ndarray, np.ndarray]:
    # Casts only when fed other dtypes: the kernel then compiles for just (float32, float32)
    # and (float64, float64), and float32 predictions keep TF.js's float32 clip values.
    if not isinstance(y_pred, np.ndarray) or y_pred.dtype not in (_FLOAT32, _FLOAT64):
        y_pred = np.asarray(y_pred, dtype=np.float32)
    if not isinstance(y_true, np.ndarray) or y_true.dtype != y_pred.dtype:
        y_true = np.asarray(y_true, dtype=y_pred.dtype)
    if y_pred.ndim == 0:
        y_pred = y_pred.reshape(1)
    width = y_pred.shape[-1]
    rows = y_pred.size // width if width else 0
    true_width = 1 if metric.sparse_targets else width
    if (
        width == 0
        or y_true.size != rows * true_width
        or (y_true.ndim and y_true.shape[0] != y_pred.shape[0])
    ):
        expected = "[..., 1] class indices" if metric.sparse_targets else "the same shape"
        raise DataError(
            f"metric {metric.name!r}: targets {list(y_true.shape)} do not fit predictions "
            f"{list(y_pred.shape)} (expected {expected})"
        )
    return y_true.reshape(rows, true_width), y_pred.reshape(rows, width)


# precision, recall, auc, top-k, f1, mean_iou: metrics with options (configured_metrics.py)
from trainctl.nn import configured_metrics  # noqa: E402,F401  (registers them, in this order)


METRICS.register("accuracy", "acc")(ShorthandMetric(
    "accuracy",
    {"binary": "binary_accuracy", "sparse": "sparse_categorical_accuracy",
     "categorical": "categorical_accuracy"},
    greater_is_better=True,
    summary="binary, sparse or categorical accuracy, chosen from the loss and output shape"))
METRICS.register("crossentropy", "ce")(ShorthandMetric(
    "crossentropy",
    {"binary": "binary_crossentropy", "sparse": "sparse_categorical_crossentropy",
     "categorical": "categorical_crossentropy"},
    greater_is_better=False,
    summary="binary, sparse or categorical crossentropy, chosen from the loss and output shape"))


@dataclass(frozen=True)
class ResolvedMetric:
    """A metric as the user asked for it: `log_key` is their spelling ('acc', 'accuracy',
    'meanSquaredError'), `requested` its canonical id, `metric` the concrete Metric."""

    log_key: str
    requested: str
    metric: Metric

    @property
    def name(self) -> str:
        return self.metric.name

    @property
    def greater_is_better(self) -> bool:
        return self.metric.greater_is_better

    @property
    def sparse_targets(self) -> bool:
        return self.metric.sparse_targets

    def compute(self, y_true: np.ndarray, y_pred: np.ndarray) -> float:
        """The concrete metric's batch value (see Metric.compute)."""
        return self.metric.compute(y_true, y_pred)


def resolve_metric(metric_id: Any, loss_id: str | None, output_shape: Sequence[int | None]) -> ResolvedMetric:
    """Resolve a metric id (or `{type: id, **options}` / a TypedSpec) against the model's
    loss and output shape (e.g. (None, 10)).

    'accuracy'/'acc' and 'crossentropy'/'ce' follow TF.js training.ts: binary when the
    output's last dim is 1 or the loss is binary_crossentropy, else sparse when the loss
    is sparse_categorical_crossentropy, else categorical. The log key is the id as
    written (or the options' `name`). UnknownIdError for unknown ids.
    """
    params = None
    if isinstance(metric_id, dict):
        options = dict(metric_id)
        metric_id = options.pop("type")
        params = options
    elif hasattr(metric_id, "params") and hasattr(metric_id, "type"):  # a config TypedSpec
        params = metric_id.params.model_dump() if metric_id.params is not None else {}
        metric_id = metric_id.type
    requested = METRICS.resolve(metric_id)
    entry = METRICS.get(requested)
    log_key = metric_id.strip()
    if entry.Params is not None:  # a metric with options: its own copy (and scratch buffers)
        entry = entry.configured(entry.Params.model_validate(params) if params else entry.Params())
        if params:
            log_key = entry.params.name or log_key
    elif params:
        raise ValueError(f"metric {metric_id!r} takes no options")
    if isinstance(entry, ShorthandMetric):
        entry = METRICS.get(entry.variants[_target_kind(loss_id, output_shape)])
    return ResolvedMetric(log_key=log_key, requested=requested, metric=entry)


def metric_key_aliases(key: str) -> list[str]:
    """The other spellings of a log key that name the same value: TF.js logs 'accuracy' as
    'acc' and 'crossentropy' as 'ce', Keras as written; `val_` prefixes carry over."""
    prefix = "val_" if key.startswith("val_") else ""
    base = key[len(prefix):]
    pairs = {"acc": "accuracy", "accuracy": "acc", "ce": "crossentropy", "crossentropy": "ce"}
    return [prefix + pairs[base]] if base in pairs else []


def check_metric_applicable(
    metric: str | Metric | ResolvedMetric, loss_id: str | None, output_shape: Sequence[int | None]
) -> str | None:
    """A one-line reason the metric cannot apply to this loss and output shape, or None.

    Only certain failures are reported: targets and predictions that cannot line up
    (sparse class-index targets against an output-shaped metric, or the reverse), and
    argmax metrics on a 1-wide output, where they are constant.
    """
    if isinstance(metric, str):
        metric = resolve_metric(metric, loss_id, output_shape)
    label = metric.log_key if isinstance(metric, ResolvedMetric) else metric.name
    concrete = metric.metric if isinstance(metric, ResolvedMetric) else metric
    if isinstance(concrete, ShorthandMetric):
        concrete = METRICS.get(concrete.variants[_target_kind(loss_id, output_shape)])
    name = concrete.name
    width = _last_dim(output_shape)
    sparse_loss = _loss_kind(loss_id) == "sparse_labels"
    what = f"metric {label!r}" + (f" ({name})" if snake_case(label) != name else "")
    if width == 1 and name in _BINARY_COUNTERPART:
        return (f"{what} compares classes along the last axis, but the output has 1 unit, "
                f"so its value is constant; use {_BINARY_COUNTERPART[name]}")
    if width is None or width == 1:
        return None
    if concrete.sparse_targets and not sparse_loss:
        return (f"{what} needs class-index targets [..., 1], but loss {loss_id!r} takes targets "
                f"shaped like the output (last dim {width}); use loss sparse_categorical_crossentropy "
                f"or metric {name.replace('sparse_', '', 1)}")
    if not concrete.sparse_targets and sparse_loss:
        return (f"{what} compares targets shaped like the output (last dim {width}), but loss "
                f"{loss_id!r} takes class-index targets [..., 1]")
    return None


_BINARY_COUNTERPART = {
    "categorical_accuracy": "binary_accuracy",
    "sparse_categorical_accuracy": "binary_accuracy",
    "categorical_crossentropy": "binary_crossentropy",
    "sparse_categorical_crossentropy": "binary_crossentropy",
}


def _last_dim(output_shape: Sequence[int | None]) -> int | None:
    return output_shape[-1] if len(output_shape) else None


def _loss_kind(loss_id: str | None) -> str | None:
    """The loss's declared target kind (Loss.target_kind), None for no or an unknown loss."""
    if not loss_id:
        return None
    from trainctl.nn.losses import LOSSES

    return LOSSES.get(loss_id).target_kind if loss_id in LOSSES else None


def _target_kind(loss_id: str | None, output_shape: Sequence[int | None]) -> str:
    kind = _loss_kind(loss_id)
    if _last_dim(output_shape) == 1 or kind == "binary":
        return "binary"
    if kind == "sparse_labels":
        return "sparse"
    return "categorical"
