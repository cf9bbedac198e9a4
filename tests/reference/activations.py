"""Plain-numpy activations, transcribed from tfjs-layers/src/activations.ts and the
tfjs-core CPU kernels it calls. Slow and obvious on purpose: float64 in, float64 out."""

from __future__ import annotations

import math

import numpy as np

SELU_SCALEALPHA = 1.7580993408473768599402175208123  # tfjs-core/src/ops/selu_util.ts
SELU_SCALE = 1.0507009873554804934193349852946


def _f64(x):
    return np.asarray(x, dtype=np.float64)


def softplus(x):
    """tfjs-backend-cpu Softplus: x above -threshold, exp(x) below threshold, else log(exp(x) + 1)."""
    x = _f64(x)
    epsilon = 1.1920928955078125e-7
    threshold = math.log(epsilon) + 2.0
    with np.errstate(over="ignore"):
        middle = np.log(np.exp(x) + 1.0)
    return np.where(x > -threshold, x, np.where(x < threshold, np.exp(x), middle))


def sigmoid(x):
    x = _f64(x)
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-x))


def _erf(x):
    return np.vectorize(math.erf, otypes=[np.float64])(x)


def elu(x):
    x = _f64(x)
    return np.where(x >= 0, x, np.exp(np.minimum(x, 0)) - 1.0)


def selu(x):
    x = _f64(x)
    return np.where(x >= 0, SELU_SCALE * x, SELU_SCALEALPHA * (np.exp(np.minimum(x, 0)) - 1.0))


def relu(x):
    return np.maximum(_f64(x), 0.0)


def relu6(x):
    return np.minimum(6.0, relu(x))


def linear(x):
    return _f64(x).copy()


def hard_sigmoid(x):
    return np.clip(0.5 + 0.2 * _f64(x), 0.0, 1.0)


def softsign(x):
    x = _f64(x)
    return x / (1.0 + np.abs(x))


def tanh(x):
    return np.tanh(_f64(x))


def softmax(x):
    x = _f64(x)
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def log_softmax(x):
    x = _f64(x)
    shifted = x - x.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def gelu(x):
    x = _f64(x)
    return x * (0.5 * (1.0 + _erf(x / math.sqrt(2.0))))


def gelu_new(x):
    x = _f64(x)
    return 0.5 * (x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3))))


def mish(x):
    x = _f64(x)
    return x * np.tanh(softplus(x))


def swish(x):
    x = _f64(x)
    return sigmoid(x) * x


REFERENCE = {
    "elu": elu,
    "selu": selu,
    "relu": relu,
    "relu6": relu6,
    "linear": linear,
    "sigmoid": sigmoid,
    "hard_sigmoid": hard_sigmoid,
    "softplus": softplus,
    "softsign": softsign,
    "tanh": tanh,
    "softmax": softmax,
    "log_softmax": log_softmax,
    "gelu": gelu,
    "gelu_new": gelu_new,
    "mish": mish,
    "swish": swish,
}
