"""Metrics with options, Keras-style (`{type: precision, thresholds: 0.7, class_id: 2}`):
precision, recall, auc, top-k accuracy, f1_score, mean_iou. Each computes with its own kernel
(kernels/metrics.py) into scratch buffers it owns; registered in METRICS by nn/metrics.py."""

from __future__ import annotations

import numpy as np

from trainctl.errors import DataError
from trainctl.nn.metrics import METRICS, Metric, _as_2d


class ConfiguredMetric(Metric):
    """A metric with options, Keras-style (`{type: precision, thresholds: 0.7, class_id: 2}`).

    The registry holds one with default options; `configured(params)` makes another. Each
    owns the scratch buffers its kernel fills, so a batch allocates nothing."""

    Params: type = None  # pydantic model of the options (set per subclass)
    compiled_ok = False  # its own kernel and scratch buffers: fit runs its steps from Python

    def __init__(self, name: str, greater_is_better: bool, summary: str, params=None):
        super().__init__(name, greater_is_better, False, summary)
        self.params = params if params is not None else self.Params()

    def configured(self, params) -> "ConfiguredMetric":
        return type(self)(self.name, self.greater_is_better, self.summary, params)

    @property
    def code(self) -> int:  # computed by its own kernel, not metric_value
        return -1

    def compute(self, y_true: np.ndarray, y_pred: np.ndarray) -> float:
        y_true2d, y_pred2d = _as_2d(self, y_true, y_pred)
        return float(self.value(y_true2d, y_pred2d))

    def value(self, y_true: np.ndarray, y_pred: np.ndarray) -> float:
        raise NotImplementedError

    def _class_id(self, width: int) -> int:
        class_id = getattr(self.params, "class_id", None)
        if class_id is None:
            return -1
        if class_id >= width:
            raise DataError(f"metric {self.name!r}: class_id {class_id} is out of range for an output of {width} units")
        return class_id


def _params_model():
    from trainctl.config.base import StrictModel

    return StrictModel


def _after(method):
    from pydantic import model_validator

    return model_validator(mode="after")(method)


class _ThresholdParams(_params_model()):  # type: ignore[misc]
    thresholds: float = 0.5  # Keras Precision/Recall: y_pred > thresholds counts as positive
    class_id: int | None = None  # one column (one class of a softmax); None: every column
    name: str | None = None  # the log key (default: the id as written)


class PrecisionRecall(ConfiguredMetric):
    Params = _ThresholdParams

    def value(self, y_true, y_pred):
        from trainctl.kernels.metrics import threshold_counts

        counts = getattr(self, "_counts", None)
        if counts is None:
            counts = self._counts = np.zeros(4)
        threshold = y_pred.dtype.type(self.params.thresholds)
        threshold_counts(y_true, y_pred, threshold, self._class_id(y_pred.shape[1]), counts)
        tp, fp, fn = counts[0], counts[1], counts[2]
        denominator = tp + (fp if self.name == "precision" else fn)
        return tp / denominator if denominator > 0 else 0.0


class _AucParams(_params_model()):  # type: ignore[misc]
    num_thresholds: int = 200  # Keras AUC default
    curve: str = "ROC"  # ROC | PR
    class_id: int | None = None  # trainctl extra: one column of a softmax; None pools every column (multi_label=False)
    name: str | None = None

    @_after
    def _check(self):
        if self.num_thresholds < 2:
            raise ValueError("num_thresholds must be an integer > 1")
        if self.curve.upper() not in ("ROC", "PR"):
            raise ValueError(f"curve must be ROC or PR, got {self.curve!r}")
        return self


class Auc(ConfiguredMetric):
    Params = _AucParams

    def value(self, y_true, y_pred):
        from trainctl.kernels.metrics import auc_value

        scratch = getattr(self, "_scratch", None)
        if scratch is None:
            scratch = self._scratch = np.zeros((4, self.params.num_thresholds))
        return auc_value(y_true, y_pred, self._class_id(y_pred.shape[1]), self.params.curve.upper() == "PR", scratch)


class _TopKParams(_params_model()):  # type: ignore[misc]
    k: int = 5  # Keras default
    name: str | None = None


class TopK(ConfiguredMetric):
    Params = _TopKParams

    def __init__(self, name, greater_is_better, summary, params=None):
        super().__init__(name, greater_is_better, summary, params)
        self.sparse_targets = name.startswith("sparse_")

    def value(self, y_true, y_pred):
        from trainctl.kernels.metrics import top_k_accuracy

        return top_k_accuracy(y_true, y_pred, self.params.k, self.sparse_targets)


class _ConfusionParams(_params_model()):  # type: ignore[misc]
    average: str = "macro"  # f1_score: macro | micro | weighted (Keras's default None gives a vector; a log needs one number)
    threshold: float = 0.5  # a 1-unit output is positive above it
    num_classes: int | None = None  # default: the output's width (2 for a 1-unit output)
    name: str | None = None

    @_after
    def _check(self):
        if self.average not in ("macro", "micro", "weighted"):
            raise ValueError(f"average must be macro, micro or weighted, got {self.average!r}")
        return self


class ConfusionMetric(ConfiguredMetric):
    """f1_score and mean_iou, from the batch's single-label confusion matrix. Targets may be
    one-hot or (with sparse_categorical_crossentropy) class indices."""

    Params = _ConfusionParams

    def matrix(self, y_true, y_pred):
        from trainctl.kernels.metrics import class_confusion

        width = y_pred.shape[1]
        k = self.params.num_classes or (2 if width == 1 else width)
        matrix = getattr(self, "_matrix", None)
        if matrix is None or matrix.shape[0] != k:
            matrix = self._matrix = np.zeros((k, k))
        class_confusion(y_true, y_pred, y_true.shape[1] == 1 and width > 1, y_pred.dtype.type(self.params.threshold), matrix)
        return matrix

    def compute(self, y_true, y_pred):
        # targets may be sparse [n, 1] under a k-wide output: accept both forms
        y_pred = np.asarray(y_pred, dtype=np.float32) if not isinstance(y_pred, np.ndarray) or y_pred.dtype.kind != "f" else y_pred
        y_pred2d = y_pred.reshape(-1, y_pred.shape[-1] if y_pred.ndim else 1)
        y_true = np.asarray(y_true, dtype=y_pred2d.dtype).reshape(len(y_pred2d), -1)
        if y_true.shape[1] not in (1, y_pred2d.shape[1]):
            raise DataError(f"metric {self.name!r}: targets {list(y_true.shape)} do not fit predictions {list(y_pred.shape)}")
        return float(self.value(y_true, np.ascontiguousarray(y_pred2d)))

    def value(self, y_true, y_pred):
        matrix = self.matrix(y_true, y_pred)
        tp = np.diag(matrix)
        predicted, actual = matrix.sum(axis=0), matrix.sum(axis=1)
        if self.name == "mean_iou":
            union = predicted + actual - tp
            valid = union > 0
            return float((tp[valid] / union[valid]).mean()) if valid.any() else 0.0
        if y_pred.shape[1] == 1:  # one label: the positive class's F1, as Keras F1Score on a 1-unit output
            tp, predicted, actual = tp[1:], predicted[1:], actual[1:]
        if self.params.average == "micro":
            tp, predicted, actual = tp.sum(keepdims=True), predicted.sum(keepdims=True), actual.sum(keepdims=True)
        f1 = np.divide(2 * tp, predicted + actual, out=np.zeros_like(tp), where=(predicted + actual) > 0)
        if self.params.average == "weighted" and y_pred.shape[1] > 1:
            return float((f1 * actual).sum() / actual.sum()) if actual.sum() > 0 else 0.0
        return float(f1.mean())


def _register_configured(cls, name: str, *aliases: str, summary: str) -> None:
    METRICS.register(name, *aliases)(cls(name, True, summary))


_register_configured(PrecisionRecall, "precision", summary=(
    "TP / (TP + FP), a prediction positive when y_pred > thresholds (0.5, as Keras; TF.js counts only exact 1s)"))
_register_configured(PrecisionRecall, "recall", summary=(
    "TP / (TP + FN), a prediction positive when y_pred > thresholds (0.5, as Keras; TF.js counts only exact 1s)"))
_register_configured(Auc, "auc", summary="Keras AUC: area under the ROC (or PR) curve over num_thresholds thresholds")
_register_configured(TopK, "top_k_categorical_accuracy", "top_k", summary="share of rows whose one-hot target is among the k top predictions")
_register_configured(TopK, "sparse_top_k_categorical_accuracy", "sparse_top_k", summary="share of rows whose class index is among the k top predictions")
_register_configured(ConfusionMetric, "f1_score", "f1", summary="F1 per class from the confusion matrix, averaged (macro by default)")
_register_configured(ConfusionMetric, "mean_iou", summary="Keras MeanIoU: per-class TP / (TP + FP + FN), averaged over classes present")
