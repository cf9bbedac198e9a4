"""Activation kernels: forward, fused bias + forward, backward, fused backward + bias grad.

Every array is 2-D C-contiguous `[rows, cols]` (an N-D activation is passed as
`a.reshape(-1, a.shape[-1])`) of float32 or float64, all of one dtype. One kernel per
role switches on an activation code from `trainctl.kernels.codes`. Kernels never
allocate, and every reduction runs in a fixed order (j = 0..cols-1, then i = 0..rows-1),
so results do not depend on anything but the inputs.

Formulas follow tfjs-layers/src/activations.ts and the tfjs-core ops it calls; derivatives
follow the tfjs-core gradient functions, so kinks get the value TF.js's gradient gives
(relu'(0) = 0, relu6'(6) = 1, hard_sigmoid'(+-2.5) = 0.2, selu'(0) = scale*alpha).
Scalars are computed in float64 and rounded once when stored.
"""

from __future__ import annotations

import math

from trainctl.jit import njit
from trainctl.kernels.codes import (
    ELU,
    GELU,
    GELU_NEW,
    HARD_SIGMOID,
    LINEAR,
    LOG_SOFTMAX,
    MISH,
    RELU,
    RELU6,
    SELU,
    SIGMOID,
    SOFTMAX,
    SOFTPLUS,
    SOFTSIGN,
    SWISH,
    TANH,
)

# tfjs-core/src/ops/selu_util.ts
SELU_SCALE = 1.0507009873554804934193349852946
SELU_SCALE_ALPHA = 1.7580993408473768599402175208123
INV_SQRT_2 = 0.7071067811865476  # gelu: Phi(x) = 0.5 * (1 + erf(x / sqrt(2)))
INV_SQRT_2PI = 0.3989422804014327  # gelu': phi(x) = exp(-x^2 / 2) / sqrt(2 pi)
SQRT_2_OVER_PI = 0.7978845608028654  # gelu_new: sqrt(2 / pi)
GELU_NEW_CUBIC = 0.044715  # gelu_new: coefficient of x^3


# -- scalar building blocks (also used by the loss kernels) ----------------------------------
@njit
def sigmoid(x):
    """1 / (1 + exp(-x)) without overflow for large |x|."""
    if x >= 0.0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


@njit
def softplus(x):
    """log(1 + exp(x)) = max(x, 0) + log1p(exp(-|x|)): no overflow, no loss of small values.

    TF.js's CPU kernel switches to `x` / `exp(x)` beyond |x| > 13.9; the difference is
    below float32 resolution there, and this form is smooth, so gradients check exactly.
    """
    if x > 0.0:
        return x + math.log1p(math.exp(-x))
    return math.log1p(math.exp(x))


@njit
def relu(x):
    """max(x, 0) with NaN passed on (TF.js's relu propagates NaN; a diverging run must show)."""
    return 0.0 if x <= 0.0 else x


@njit
def relu_derivative(x):
    """tf step(x): 1 above 0, 0 at and below 0, NaN for NaN (tfjs Step kernel)."""
    if x > 0.0:
        return 1.0
    return 0.0 if x <= 0.0 else x


@njit
def _forward(x, code):
    """act(x) for an element-wise activation code."""
    if code == LINEAR:
        return 1.0 * x
    if code == RELU:
        return relu(x)
    if code == SIGMOID:
        return sigmoid(x)
    if code == TANH:
        return math.tanh(x)
    if code == ELU:
        return 1.0 * x if x >= 0.0 else math.expm1(x)
    if code == SELU:
        return SELU_SCALE * x if x >= 0.0 else SELU_SCALE_ALPHA * math.expm1(x)
    if code == RELU6:
        return 0.0 if x <= 0.0 else (6.0 if x >= 6.0 else 1.0 * x)
    if code == HARD_SIGMOID:
        v = 0.2 * x + 0.5
        return 0.0 if v <= 0.0 else (1.0 if v >= 1.0 else v)
    if code == SOFTPLUS:
        return softplus(x)
    if code == SOFTSIGN:
        return x / (1.0 + abs(x))
    if code == GELU:
        return 0.5 * x * (1.0 + math.erf(x * INV_SQRT_2))
    if code == GELU_NEW:
        return 0.5 * x * (1.0 + math.tanh(SQRT_2_OVER_PI * (x + GELU_NEW_CUBIC * x * x * x)))
    if code == MISH:
        return x * math.tanh(softplus(x))
    if code == SWISH:
        return x * sigmoid(x)
    return math.nan  # unknown code: poison the output rather than guess


@njit
def _derivative(x, y, code):
    """d act / dx at x, given y = act(x), for an element-wise activation code."""
    if code == LINEAR:
        return 1.0
    if code == RELU:
        return relu_derivative(x)
    if code == SIGMOID:
        return y * (1.0 - y)
    if code == TANH:
        return 1.0 - y * y
    if code == ELU:
        return 1.0 if y >= 0.0 else y + 1.0  # EluGrad works from y
    if code == SELU:
        return SELU_SCALE if x > 0.0 else SELU_SCALE_ALPHA * math.exp(x)
    if code == RELU6:
        return 0.0 if x > 6.0 else relu_derivative(x)  # lessEqual(x, 6) * step(x)
    if code == HARD_SIGMOID:
        v = 0.2 * x + 0.5
        return 0.2 if (v >= 0.0 and v <= 1.0) else 0.0  # clipByValue passes at the bounds
    if code == SOFTPLUS:
        return sigmoid(x)
    if code == SOFTSIGN:
        a = 1.0 + abs(x)
        return 1.0 / (a * a)
    if code == GELU:
        return 0.5 * (1.0 + math.erf(x * INV_SQRT_2)) + x * INV_SQRT_2PI * math.exp(-0.5 * x * x)
    if code == GELU_NEW:
        t = math.tanh(SQRT_2_OVER_PI * (x + GELU_NEW_CUBIC * x * x * x))
        du = SQRT_2_OVER_PI * (1.0 + 3.0 * GELU_NEW_CUBIC * x * x)
        return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du
    if code == MISH:
        t = math.tanh(softplus(x))
        return t + x * (1.0 - t * t) * sigmoid(x)
    if code == SWISH:
        s = sigmoid(x)
        return s + x * s * (1.0 - s)
    return math.nan


# -- row-wise activations ------------------------------------------------------------------
@njit
def _softmax_row(z, out, i, row_max, code):
    """Row i of softmax / log_softmax, given the row's max; `out` may be `z`."""
    cols = z.shape[1]
    total = 0.0
    if code == SOFTMAX:
        for j in range(cols):
            e = math.exp(z[i, j] - row_max)
            out[i, j] = e
            total += e
        inv = 1.0 / total
        for j in range(cols):
            out[i, j] = out[i, j] * inv
    else:
        for j in range(cols):
            total += math.exp(z[i, j] - row_max)
        log_total = math.log(total)
        for j in range(cols):
            out[i, j] = (z[i, j] - row_max) - log_total


@njit
def _softmax_backward_row(y, dy, dz, i, code):
    """Row i of dz for softmax (y*(dy - sum(dy*y))) or log_softmax (dy - exp(y)*sum(dy))."""
    cols = y.shape[1]
    total = 0.0
    if code == SOFTMAX:
        for j in range(cols):
            total += dy[i, j] * y[i, j]
        for j in range(cols):
            dz[i, j] = y[i, j] * (dy[i, j] - total)
    else:
        for j in range(cols):
            total += dy[i, j]
        for j in range(cols):
            dz[i, j] = dy[i, j] - math.exp(y[i, j]) * total


# -- the kernels ---------------------------------------------------------------------------
@njit
def activation_forward(z, out, code):
    """out = act(z). z, out: [rows, cols]; `out` may be `z` (in place)."""
    rows, cols = z.shape
    if code == SOFTMAX or code == LOG_SOFTMAX:
        for i in range(rows):
            row_max = z[i, 0]
            for j in range(1, cols):
                if z[i, j] > row_max:
                    row_max = z[i, j]
            _softmax_row(z, out, i, row_max, code)
    elif code == LINEAR:
        for i in range(rows):
            for j in range(cols):
                out[i, j] = z[i, j]
    elif code == RELU:  # the hot case, without the per-element code switch
        for i in range(rows):
            for j in range(cols):
                out[i, j] = relu(z[i, j])
    else:
        for i in range(rows):
            for j in range(cols):
                out[i, j] = _forward(z[i, j], code)


@njit
def bias_activation_forward(z, bias, out, code):
    """z += bias (in place: z keeps the pre-activation for backward), then out = act(z).

    z, out: [rows, cols]; bias: [cols]. One pass over z. `out` may be `z` when the
    pre-activation is not needed (linear, or inference).
    """
    bias_activation_forward_inline(z, bias, out, code)


@njit(inline="always")
def bias_activation_forward_inline(z, bias, out, code):
    """bias_activation_forward's body, inlined into its callers: a caller that fixes `code`
    when it is compiled (kernels/steps.py dense_kernels_for) compiles that activation only —
    numba prunes the other branches once the body is inlined."""
    rows, cols = z.shape
    if code == SOFTMAX or code == LOG_SOFTMAX:
        for i in range(rows):
            row_max = z[i, 0] + bias[0]
            for j in range(cols):
                v = z[i, j] + bias[j]
                z[i, j] = v
                if v > row_max:
                    row_max = v
            _softmax_row(z, out, i, row_max, code)
    elif code == LINEAR:
        for i in range(rows):
            for j in range(cols):
                v = z[i, j] + bias[j]
                z[i, j] = v
                out[i, j] = v
    elif code == RELU:
        for i in range(rows):
            for j in range(cols):
                v = z[i, j] + bias[j]
                z[i, j] = v
                out[i, j] = relu(v)
    else:
        for i in range(rows):
            for j in range(cols):
                v = z[i, j] + bias[j]
                z[i, j] = v
                out[i, j] = _forward(v, code)


@njit
def activation_backward(z, y, dy, dz, code):
    """dz = dL/dz from dy = dL/dy, z the pre-activation and y = act(z). All [rows, cols].

    `dz` may be `dy` (in place).
    """
    rows, cols = z.shape
    if code == SOFTMAX or code == LOG_SOFTMAX:
        for i in range(rows):
            _softmax_backward_row(y, dy, dz, i, code)
    elif code == LINEAR:
        for i in range(rows):
            for j in range(cols):
                dz[i, j] = dy[i, j]
    elif code == RELU:
        for i in range(rows):
            for j in range(cols):
                dz[i, j] = dy[i, j] * relu_derivative(z[i, j])
    else:
        for i in range(rows):
            for j in range(cols):
                dz[i, j] = dy[i, j] * _derivative(z[i, j], y[i, j], code)


@njit
def activation_backward_bias_grad(z, y, dy, dz, dbias, code):
    """As `activation_backward`, and dbias[j] = sum_i dz[i, j] (dbias: [cols], overwritten)."""
    activation_backward_bias_grad_inline(z, y, dy, dz, dbias, code)


@njit(inline="always")
def activation_backward_bias_grad_inline(z, y, dy, dz, dbias, code):
    """activation_backward_bias_grad's body, inlined as bias_activation_forward_inline is."""
    rows, cols = z.shape
    for j in range(cols):
        dbias[j] = 0.0
    if code == SOFTMAX or code == LOG_SOFTMAX:
        for i in range(rows):
            _softmax_backward_row(y, dy, dz, i, code)
            for j in range(cols):
                dbias[j] += dz[i, j]
    elif code == LINEAR:
        for i in range(rows):
            for j in range(cols):
                g = dy[i, j]
                dz[i, j] = g
                dbias[j] += g
    elif code == RELU:
        for i in range(rows):
            for j in range(cols):
                g = dy[i, j] * relu_derivative(z[i, j])
                dz[i, j] = g
                dbias[j] += g
    else:
        for i in range(rows):
            for j in range(cols):
                g = dy[i, j] * _derivative(z[i, j], y[i, j], code)
                dz[i, j] = g
                dbias[j] += g
