"""Loss kernels: per-row loss and its gradient, plus fused output-layer backward passes.

Arrays are 2-D C-contiguous `[rows, cols]` of one float dtype (float32 or float64); the
loss reduces over the last axis (cols) exactly as tfjs-layers/src/losses.ts does, with
its epsilon (1e-7) clipping and categorical_crossentropy's normalisation of y_pred by
its row sum. Gradients are the exact derivative of that formula, with tfjs-core's
conventions where a function has no derivative: clipByValue passes the gradient at and
inside its bounds and blocks it outside; maximum(0, x) passes only where x > 0; abs'(0)
is -1 (tf.step(x, -1)); max over a row sends the gradient to every tied maximum.

Batch convention: the caller passes row_scale [rows]; the batch loss is
`sum_i row_scale[i] * per_row[i]` and grad[i, :] = row_scale[i] * d per_row[i] / d y_pred[i, :].
For a plain mean, row_scale = 1 / rows; with sample weights, sample_weight / rows.
Accumulations run in float64 in a fixed order and are rounded once when stored.
The row functions (one per formula) are in loss_formulas.py.
"""

from __future__ import annotations

import math

import numpy as np

from trainctl.kernels.codes import (
    BINARY_CROSSENTROPY,
    CATEGORICAL_CROSSENTROPY,
    CATEGORICAL_HINGE,
    COSINE_PROXIMITY,
    HINGE,
    KULLBACK_LEIBLER_DIVERGENCE,
    LOGCOSH,
    MEAN_ABSOLUTE_ERROR,
    MEAN_ABSOLUTE_PERCENTAGE_ERROR,
    MEAN_SQUARED_ERROR,
    MEAN_SQUARED_LOGARITHMIC_ERROR,
    POISSON,
    SPARSE_CATEGORICAL_CROSSENTROPY,
    SQUARED_HINGE,
)
from trainctl.jit import njit
from trainctl.kernels.loss_formulas import (
    GRAD_WRT_LOGITS,
    GRAD_WRT_PRED,
    LOSS_ONLY,
    _binary_crossentropy,
    _categorical_hinge,
    _cosine_proximity,
    _crossentropy,
    _hinge,
    _kullback_leibler_divergence,
    _logcosh,
    _mean_absolute_error,
    _mean_absolute_percentage_error,
    _mean_squared_error,
    _mean_squared_logarithmic_error,
    _poisson,
    _squared_hinge,
)


# -- the kernels ---------------------------------------------------------------------------
@njit
def loss_forward_backward(code, y_true, y_pred, row_scale, per_row, grad, need_grad):
    """per_row[i] = loss of row i; when need_grad, grad[i, :] = row_scale[i] * dloss_i/dy_pred[i, :].

    y_pred, grad: [rows, cols]; y_true: [rows, cols], or [rows, 1] class indices (as
    floats) for sparse_categorical_crossentropy; row_scale, per_row: [rows].
    `grad` must not be `y_pred`; it is untouched when need_grad is False.
    """
    mode = GRAD_WRT_PRED if need_grad else LOSS_ONLY
    loss_rows(code, y_true, y_pred, row_scale, per_row, grad, mode, np.float64, False)


ANY_CODE = -1  # loss_rows reads the code from its argument at run time


def _loss_rows_kernel(fixed):
    """loss_rows with the loss code fixed when it is compiled (`fixed`), or read from the
    argument (`fixed` = ANY_CODE). numba prunes the branches of a fixed code before typing
    them, so a fixed code compiles its own formula only: mean_squared_error's loss_rows
    compiles in ~0.5 s, the fourteen formulas of the generic one in ~6 s (cold cache). The
    arithmetic of a branch is the same either way, so the results are bit-identical; each
    fixed code is a separate entry of the same numba cache index (keyed by `fixed`)."""

    @njit
    def loss_rows(code, y_true, y_pred, row_scale, per_row, grad, mode, kind, exact):
        """The loss `code` of every row: per_row[i] (when per_row has rows) and the float64 sum
        over rows in row order, returned; grad as the module docstring says for `mode`.

        The precision policy: `kind` is the float type clipping and element arithmetic run in,
        `exact` the TF.js-logged form. Training losses pass (np.float64, False); metrics pass
        (y_pred's dtype, True), so float32 metrics reproduce TF.js's float32 values.
        The dispatch on `code` stays inside the row loop, as one if-chain: a dispatcher function
        returning from each branch ran the loss 2x slower.
        """
        code = code if fixed == ANY_CODE else fixed
        rows = y_pred.shape[0]
        need_grad = mode != LOSS_ONLY
        store = per_row.shape[0] > 0
        total = 0.0
        for i in range(rows):
            # the scale reaches only gradients; kept in row_scale's dtype (products in float32 stay so)
            scale = row_scale[i] if need_grad else row_scale.dtype.type(1.0)
            if code == MEAN_SQUARED_ERROR:
                loss = _mean_squared_error(y_true, y_pred, grad, i, scale, need_grad)
            elif code == CATEGORICAL_CROSSENTROPY:
                loss = _crossentropy(y_true, y_pred, grad, i, scale, mode, False, kind, exact)
            elif code == SPARSE_CATEGORICAL_CROSSENTROPY:
                loss = _crossentropy(y_true, y_pred, grad, i, scale, mode, True, kind, exact)
            elif code == BINARY_CROSSENTROPY:
                loss = _binary_crossentropy(y_true, y_pred, grad, i, scale, mode, kind)
            elif code == MEAN_ABSOLUTE_ERROR:
                loss = _mean_absolute_error(y_true, y_pred, grad, i, scale, need_grad)
            elif code == MEAN_ABSOLUTE_PERCENTAGE_ERROR:
                loss = _mean_absolute_percentage_error(y_true, y_pred, grad, i, scale, need_grad, kind, exact)
            elif code == MEAN_SQUARED_LOGARITHMIC_ERROR:
                loss = _mean_squared_logarithmic_error(y_true, y_pred, grad, i, scale, need_grad)
            elif code == SQUARED_HINGE:
                loss = _squared_hinge(y_true, y_pred, grad, i, scale, need_grad)
            elif code == HINGE:
                loss = _hinge(y_true, y_pred, grad, i, scale, need_grad)
            elif code == CATEGORICAL_HINGE:
                loss = _categorical_hinge(y_true, y_pred, grad, i, scale, need_grad)
            elif code == LOGCOSH:
                loss = _logcosh(y_true, y_pred, grad, i, scale, need_grad)
            elif code == KULLBACK_LEIBLER_DIVERGENCE:
                loss = _kullback_leibler_divergence(y_true, y_pred, grad, i, scale, need_grad)
            elif code == POISSON:
                loss = _poisson(y_true, y_pred, grad, i, scale, need_grad)
            elif code == COSINE_PROXIMITY:
                loss = _cosine_proximity(y_true, y_pred, grad, i, scale, need_grad, kind)
            else:
                loss = math.nan  # unknown code: poison rather than guess
            if store:
                per_row[i] = loss
            total += loss
        return total

    return loss_rows


loss_rows = _loss_rows_kernel(ANY_CODE)
_fixed_loss_rows: dict = {}


def loss_rows_for(code: int):
    """loss_rows compiled for the one loss `code` (made once per code per process): the
    Python training loop calls it, so a model compiles (and loads) only its own loss.
    Compiled callers (the compiled plan, metrics) call the generic `loss_rows`."""
    kernel = _fixed_loss_rows.get(code)
    if kernel is None:
        kernel = _fixed_loss_rows[code] = _loss_rows_kernel(int(code))
    return kernel


@njit
def softmax_crossentropy_backward(code, y_true, probs, row_scale, per_row, dz):
    """Fused softmax output + (sparse) categorical crossentropy.

    probs = softmax(logits): [rows, cols]; y_true: [rows, cols] (categorical) or [rows, 1]
    (sparse); per_row: [rows] the loss; dz: [rows, cols] = row_scale[i] * dloss_i/dlogits,
    exactly the chain of the loss gradient (with TF.js's clip and normalisation) and the
    softmax backward. Without active clips and with targets summing to 1 this is
    row_scale * (p - t). `dz` may be `probs`.
    """
    rows = probs.shape[0]
    sparse = code == SPARSE_CATEGORICAL_CROSSENTROPY
    known = sparse or code == CATEGORICAL_CROSSENTROPY
    for i in range(rows):
        if known:
            per_row[i] = _crossentropy(y_true, probs, dz, i, row_scale[i], GRAD_WRT_LOGITS, sparse, np.float64, False)
        else:
            per_row[i] = math.nan


@njit
def sigmoid_binary_crossentropy_backward(y_true, probs, row_scale, per_row, dz):
    """Fused sigmoid output + binary crossentropy.

    probs = sigmoid(logits), y_true, dz: [rows, cols]; per_row, row_scale: [rows].
    dz = row_scale[i] * dloss_i/dlogits = row_scale * (p - t) / cols where p lies inside
    [eps, 1 - eps] and 0 where the clip is active, exactly as chaining the gradients gives.
    `dz` may be `probs`.
    """
    rows = probs.shape[0]
    for i in range(rows):
        per_row[i] = _binary_crossentropy(y_true, probs, dz, i, row_scale[i], GRAD_WRT_LOGITS, np.float64)
