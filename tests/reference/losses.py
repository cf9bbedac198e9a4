"""Plain-numpy losses, transcribed from tfjs-layers/src/losses.ts (reduction over the last
axis, epsilon 1e-7). Each takes y_true, y_pred of any rank and returns the per-sample loss
(shape y_pred.shape[:-1]) in float64."""

from __future__ import annotations

import math

import numpy as np

from tests.reference.activations import softplus

EPSILON = 1e-7
MAX_VALUE = 1.7976931348623157e308


def _f64(x):
    return np.asarray(x, dtype=np.float64)


def l2_normalize(x):
    square_sum = np.sum(x * x, axis=-1, keepdims=True)
    return x / np.sqrt(np.maximum(square_sum, EPSILON))


def mean_squared_error(t, p):
    t, p = _f64(t), _f64(p)
    return np.mean((p - t) ** 2, axis=-1)


def mean_absolute_error(t, p):
    t, p = _f64(t), _f64(p)
    return np.mean(np.abs(p - t), axis=-1)


def mean_absolute_percentage_error(t, p):
    t, p = _f64(t), _f64(p)
    clipped_true = np.clip(np.abs(t), EPSILON, MAX_VALUE)
    return 100.0 * np.mean(np.abs((t - p) / clipped_true), axis=-1)


def mean_squared_logarithmic_error(t, p):
    t, p = _f64(t), _f64(p)
    first = np.log(1.0 + np.clip(p, EPSILON, MAX_VALUE))
    second = np.log(1.0 + np.clip(t, EPSILON, MAX_VALUE))
    return np.mean((first - second) ** 2, axis=-1)


def squared_hinge(t, p):
    t, p = _f64(t), _f64(p)
    return np.mean(np.maximum(0.0, 1.0 - t * p) ** 2, axis=-1)


def hinge(t, p):
    t, p = _f64(t), _f64(p)
    return np.mean(np.maximum(0.0, 1.0 - t * p), axis=-1)


def categorical_hinge(t, p):
    t, p = _f64(t), _f64(p)
    pos = np.sum(t * p, axis=-1)
    neg = np.max((1.0 - t) * p, axis=-1)
    return np.maximum(0.0, 1.0 + (neg - pos))


def logcosh(t, p):
    t, p = _f64(t), _f64(p)
    d = p - t
    return np.mean(d + softplus(-2.0 * d) - math.log(2.0), axis=-1)


def categorical_crossentropy(t, p):
    t, p = _f64(t), _f64(p)
    p = p / np.sum(p, axis=-1, keepdims=True)
    p = np.clip(p, EPSILON, 1.0 - EPSILON)
    return -np.sum(t * np.log(p), axis=-1)


def sparse_categorical_crossentropy(t, p):
    t, p = _f64(t), _f64(p)
    labels = np.floor(t.reshape(p.shape[:-1])).astype(np.int64)
    p = np.clip(p, EPSILON, 1.0 - EPSILON)
    one_hot = np.zeros_like(p)
    valid = (labels >= 0) & (labels < p.shape[-1])
    idx = np.nonzero(valid)
    one_hot[(*idx, labels[idx])] = 1.0
    return categorical_crossentropy(one_hot, p)


def sigmoid_cross_entropy_with_logits(labels, logits):
    return np.maximum(logits, 0.0) - logits * labels + np.log1p(np.exp(-np.abs(logits)))


def binary_crossentropy(t, p):
    t, p = _f64(t), _f64(p)
    y = np.clip(p, EPSILON, 1.0 - EPSILON)
    y = np.log(y / (1.0 - y))
    return np.mean(sigmoid_cross_entropy_with_logits(t, y), axis=-1)


def kullback_leibler_divergence(t, p):
    t, p = _f64(t), _f64(p)
    clipped_true = np.clip(t, EPSILON, 1.0)
    clipped_pred = np.clip(p, EPSILON, 1.0)
    return np.sum(t * np.log(clipped_true / clipped_pred), axis=-1)


def poisson(t, p):
    t, p = _f64(t), _f64(p)
    return np.mean(p - t * np.log(EPSILON + p), axis=-1)


def cosine_proximity(t, p):
    t, p = _f64(t), _f64(p)
    return -np.sum(l2_normalize(t) * l2_normalize(p), axis=-1)


REFERENCE = {
    "mean_squared_error": mean_squared_error,
    "mean_absolute_error": mean_absolute_error,
    "mean_absolute_percentage_error": mean_absolute_percentage_error,
    "mean_squared_logarithmic_error": mean_squared_logarithmic_error,
    "squared_hinge": squared_hinge,
    "hinge": hinge,
    "categorical_hinge": categorical_hinge,
    "logcosh": logcosh,
    "categorical_crossentropy": categorical_crossentropy,
    "sparse_categorical_crossentropy": sparse_categorical_crossentropy,
    "binary_crossentropy": binary_crossentropy,
    "kullback_leibler_divergence": kullback_leibler_divergence,
    "poisson": poisson,
    "cosine_proximity": cosine_proximity,
}
