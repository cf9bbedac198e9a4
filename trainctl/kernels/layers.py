"""Kernels for layers without a matrix product (dropout)."""

from trainctl.jit import njit


@njit
def dropout_forward(x, uniform, rate, mask, y):
    """TF.js dropout: keep where uniform >= rate, scale kept values by 1/(1-rate).
    x, uniform, mask, y: 1-D of equal length; mask and y are written."""
    scale = 1.0 / (1.0 - rate)
    for i in range(x.shape[0]):
        keep = scale if uniform[i] >= rate else 0.0
        mask[i] = keep
        y[i] = x[i] * keep
