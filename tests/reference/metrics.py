"""Plain-numpy metrics written from TF.js tfjs-layers/src/metrics.ts and losses.ts (and
Keras R2Score for r2), whole-array and vectorised, to check the numba kernels against.

Each takes y_true, y_pred of any rank (sparse: y_true [..., 1] or [...] class indices)
and returns the batch value: the per-row metric averaged over rows, as TF.js training.ts
does with `mean(metricFn(yTrue, yPred))`. Arithmetic stays in y_pred's dtype, as in TF.js.
"""

from __future__ import annotations

import numpy as np

EPSILON = 1e-7


def _rows(y_true, y_pred, sparse=False):
    y_pred = np.asarray(y_pred)
    y_pred = y_pred.reshape(-1, y_pred.shape[-1])
    y_true = np.asarray(y_true, dtype=y_pred.dtype).reshape(y_pred.shape[0], 1 if sparse else -1)
    return y_true, y_pred


def binary_accuracy(y_true, y_pred):
    t, p = _rows(y_true, y_pred)
    thresholded = (p > 0.5).astype(t.dtype)
    return float(np.mean(np.mean(t == thresholded, axis=-1)))


def categorical_accuracy(y_true, y_pred):
    t, p = _rows(y_true, y_pred)
    return float(np.mean(np.argmax(t, axis=-1) == np.argmax(p, axis=-1)))


def sparse_categorical_accuracy(y_true, y_pred):
    t, p = _rows(y_true, y_pred, sparse=True)
    return float(np.mean(t[:, 0] == np.argmax(p, axis=-1).astype(t.dtype)))


def precision(y_true, y_pred):
    # Keras Precision (thresholds=0.5): positive when y_pred > 0.5, a target when != 0
    t, p = _rows(y_true, y_pred)
    tp = np.sum((t != 0) & (p > 0.5))
    fp = np.sum((t == 0) & (p > 0.5))
    return float(tp / (tp + fp)) if tp + fp > 0 else 0.0


def recall(y_true, y_pred):
    t, p = _rows(y_true, y_pred)
    tp = np.sum((t != 0) & (p > 0.5))
    fn = np.sum((t != 0) & ~(p > 0.5))
    return float(tp / (tp + fn)) if tp + fn > 0 else 0.0


def mean_squared_error(y_true, y_pred):
    t, p = _rows(y_true, y_pred)
    return float(np.mean(np.mean(np.square(p - t), axis=-1)))


def mean_absolute_error(y_true, y_pred):
    t, p = _rows(y_true, y_pred)
    return float(np.mean(np.mean(np.abs(p - t), axis=-1)))


def mean_absolute_percentage_error(y_true, y_pred):
    t, p = _rows(y_true, y_pred)
    eps = p.dtype.type(EPSILON)
    clipped_true = np.clip(np.abs(t), eps, np.finfo(p.dtype).max)
    return float(np.mean(100 * np.mean(np.abs((t - p) / clipped_true), axis=-1)))


def _l2_normalize(x):
    eps = x.dtype.type(EPSILON)
    square_sum = np.sum(np.square(x), axis=-1, keepdims=True)
    return x / np.sqrt(np.maximum(square_sum, eps))


def cosine_proximity(y_true, y_pred):
    t, p = _rows(y_true, y_pred)
    return float(np.mean(-np.sum(_l2_normalize(t) * _l2_normalize(p), axis=-1)))


def binary_crossentropy(y_true, y_pred):
    t, p = _rows(y_true, y_pred)
    one, eps = p.dtype.type(1), p.dtype.type(EPSILON)
    clipped = np.clip(p, eps, one - eps)
    logits = np.log(clipped / (one - clipped))
    # sigmoidCrossEntropyWithLogits: max(x, 0) - x * z + log(1 + exp(-|x|))
    per_element = np.maximum(logits, 0) - logits * t + np.log1p(np.exp(-np.abs(logits)))
    return float(np.mean(np.mean(per_element, axis=-1)))


def _categorical_crossentropy_rows(t, p):
    one, eps = p.dtype.type(1), p.dtype.type(EPSILON)
    scaled = p / np.sum(p, axis=-1, keepdims=True)
    return -np.sum(t * np.log(np.clip(scaled, eps, one - eps)), axis=-1)


def categorical_crossentropy(y_true, y_pred):
    t, p = _rows(y_true, y_pred)
    return float(np.mean(_categorical_crossentropy_rows(t, p)))


def sparse_categorical_crossentropy(y_true, y_pred):
    t, p = _rows(y_true, y_pred, sparse=True)
    one, eps = p.dtype.type(1), p.dtype.type(EPSILON)
    labels = np.floor(t[:, 0]).astype(np.int64)
    one_hot = np.zeros_like(p)
    inside = (labels >= 0) & (labels < p.shape[1])
    one_hot[np.nonzero(inside)[0], labels[inside]] = 1
    return float(np.mean(_categorical_crossentropy_rows(one_hot, np.clip(p, eps, one - eps))))


def r2_score(y_true, y_pred):
    t, p = _rows(y_true, y_pred)
    t, p = t.astype(np.float64), p.astype(np.float64)
    ss_res = np.sum(np.square(t - p), axis=0)
    ss_tot = np.sum(np.square(t - np.mean(t, axis=0)), axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        scores = 1 - ss_res / ss_tot
    scores = np.where(np.isinf(scores), 0.0, scores)
    return float(np.mean(scores))


REFERENCES = {
    "binary_accuracy": binary_accuracy,
    "categorical_accuracy": categorical_accuracy,
    "sparse_categorical_accuracy": sparse_categorical_accuracy,
    "precision": precision,
    "recall": recall,
    "mean_squared_error": mean_squared_error,
    "mean_absolute_error": mean_absolute_error,
    "mean_absolute_percentage_error": mean_absolute_percentage_error,
    "cosine_proximity": cosine_proximity,
    "binary_crossentropy": binary_crossentropy,
    "categorical_crossentropy": categorical_crossentropy,
    "sparse_categorical_crossentropy": sparse_categorical_crossentropy,
    "r2_score": r2_score,
}
