"""Kernels for layers without a matrix product (dropout) and for batch assembly."""

from trainctl.kernels.jit import njit


@njit
def dropout_forward(x, uniform, rate, mask, y):
    """TF.js dropout: keep where uniform >= rate, scale kept values by 1/(1-rate).
    x, uniform, mask, y: 1-D of equal length; mask and y are written."""
    scale = 1.0 / (1.0 - rate)
    for i in range(x.shape[0]):
        keep = scale if uniform[i] >= rate else 0.0
        mask[i] = keep
        y[i] = x[i] * keep


@njit
def gather_rows(source, order, start, count, out):
    """out[i] = source[order[start + i]] for i < count; source/out are 2-D [rows, features]."""
    n_features = source.shape[1]
    for i in range(count):
        row = order[start + i]
        for j in range(n_features):
            out[i, j] = source[row, j]


@njit
def gather_batch(x_source, y_source, order, start, count, x_out, y_out):
    """gather_rows for inputs and targets in one call (the per-batch path of ArraySource)."""
    gather_rows(x_source, order, start, count, x_out)
    gather_rows(y_source, order, start, count, y_out)
