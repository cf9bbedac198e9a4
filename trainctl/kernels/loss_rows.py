"""One batch kernel per loss for the Python path: `ROWS[code]` is exactly the branch of
losses.loss_forward_backward for that code (same row function, same arguments), so a model
compiles (or loads from the cache) only the loss it uses — the generic kernel types and compiles
every loss's row function, ~6 s of a first run's ~10 s of compiling. The compiled training loop
keeps the generic kernel (one compilation for every loss); tests/test_loss_rows.py checks the
two agree bit for bit for every code.

Each: (y_true, y_pred, row_scale, per_row, grad, need_grad), as loss_forward_backward without
its code.
"""

from __future__ import annotations

from trainctl.kernels import codes
from trainctl.kernels.jit import njit
from trainctl.kernels.losses import (
    _GRAD_WRT_PRED,
    _LOSS_ONLY,
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


@njit
def mean_squared_error_rows(y_true, y_pred, row_scale, per_row, grad, need_grad):
    for i in range(y_pred.shape[0]):
        per_row[i] = _mean_squared_error(y_true, y_pred, grad, i, row_scale[i], need_grad)


@njit
def mean_absolute_error_rows(y_true, y_pred, row_scale, per_row, grad, need_grad):
    for i in range(y_pred.shape[0]):
        per_row[i] = _mean_absolute_error(y_true, y_pred, grad, i, row_scale[i], need_grad)


@njit
def mean_absolute_percentage_error_rows(y_true, y_pred, row_scale, per_row, grad, need_grad):
    for i in range(y_pred.shape[0]):
        per_row[i] = _mean_absolute_percentage_error(y_true, y_pred, grad, i, row_scale[i], need_grad)


@njit
def mean_squared_logarithmic_error_rows(y_true, y_pred, row_scale, per_row, grad, need_grad):
    for i in range(y_pred.shape[0]):
        per_row[i] = _mean_squared_logarithmic_error(y_true, y_pred, grad, i, row_scale[i], need_grad)


@njit
def squared_hinge_rows(y_true, y_pred, row_scale, per_row, grad, need_grad):
    for i in range(y_pred.shape[0]):
        per_row[i] = _squared_hinge(y_true, y_pred, grad, i, row_scale[i], need_grad)


@njit
def hinge_rows(y_true, y_pred, row_scale, per_row, grad, need_grad):
    for i in range(y_pred.shape[0]):
        per_row[i] = _hinge(y_true, y_pred, grad, i, row_scale[i], need_grad)


@njit
def categorical_hinge_rows(y_true, y_pred, row_scale, per_row, grad, need_grad):
    for i in range(y_pred.shape[0]):
        per_row[i] = _categorical_hinge(y_true, y_pred, grad, i, row_scale[i], need_grad)


@njit
def logcosh_rows(y_true, y_pred, row_scale, per_row, grad, need_grad):
    for i in range(y_pred.shape[0]):
        per_row[i] = _logcosh(y_true, y_pred, grad, i, row_scale[i], need_grad)


@njit
def kullback_leibler_divergence_rows(y_true, y_pred, row_scale, per_row, grad, need_grad):
    for i in range(y_pred.shape[0]):
        per_row[i] = _kullback_leibler_divergence(y_true, y_pred, grad, i, row_scale[i], need_grad)


@njit
def poisson_rows(y_true, y_pred, row_scale, per_row, grad, need_grad):
    for i in range(y_pred.shape[0]):
        per_row[i] = _poisson(y_true, y_pred, grad, i, row_scale[i], need_grad)


@njit
def cosine_proximity_rows(y_true, y_pred, row_scale, per_row, grad, need_grad):
    for i in range(y_pred.shape[0]):
        per_row[i] = _cosine_proximity(y_true, y_pred, grad, i, row_scale[i], need_grad)


@njit
def categorical_crossentropy_rows(y_true, y_pred, row_scale, per_row, grad, need_grad):
    mode = _GRAD_WRT_PRED if need_grad else _LOSS_ONLY
    for i in range(y_pred.shape[0]):
        per_row[i] = _crossentropy(y_true, y_pred, grad, i, row_scale[i], mode, False)


@njit
def sparse_categorical_crossentropy_rows(y_true, y_pred, row_scale, per_row, grad, need_grad):
    mode = _GRAD_WRT_PRED if need_grad else _LOSS_ONLY
    for i in range(y_pred.shape[0]):
        per_row[i] = _crossentropy(y_true, y_pred, grad, i, row_scale[i], mode, True)


@njit
def binary_crossentropy_rows(y_true, y_pred, row_scale, per_row, grad, need_grad):
    mode = _GRAD_WRT_PRED if need_grad else _LOSS_ONLY
    for i in range(y_pred.shape[0]):
        per_row[i] = _binary_crossentropy(y_true, y_pred, grad, i, row_scale[i], mode)


ROWS = {
    codes.MEAN_SQUARED_ERROR: mean_squared_error_rows,
    codes.MEAN_ABSOLUTE_ERROR: mean_absolute_error_rows,
    codes.MEAN_ABSOLUTE_PERCENTAGE_ERROR: mean_absolute_percentage_error_rows,
    codes.MEAN_SQUARED_LOGARITHMIC_ERROR: mean_squared_logarithmic_error_rows,
    codes.SQUARED_HINGE: squared_hinge_rows,
    codes.HINGE: hinge_rows,
    codes.CATEGORICAL_HINGE: categorical_hinge_rows,
    codes.LOGCOSH: logcosh_rows,
    codes.KULLBACK_LEIBLER_DIVERGENCE: kullback_leibler_divergence_rows,
    codes.POISSON: poisson_rows,
    codes.COSINE_PROXIMITY: cosine_proximity_rows,
    codes.CATEGORICAL_CROSSENTROPY: categorical_crossentropy_rows,
    codes.SPARSE_CATEGORICAL_CROSSENTROPY: sparse_categorical_crossentropy_rows,
    codes.BINARY_CROSSENTROPY: binary_crossentropy_rows,
}
