"""Kernels for layers without a matrix product (dropout, the activity-regularizer gradient)."""

from trainctl.jit import njit
from trainctl.kernels.optimizers import l1l2_add_grad


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
def add_activity_grad(dy, y, total, l1, l2_twice, inv_n):
    """dLoss/dy plus the grad of an activity penalty(y) / n (Keras: l1 * sign(y) + 2 * l2 * y,
    scaled by 1 / n) into `total`, which is returned; dy stays intact. 1-D views of equal length
    (total may be longer); l1, l2_twice and inv_n in y's dtype."""
    out = total[:dy.shape[0]]
    out[:] = 0
    l1l2_add_grad(y, out, l1, l2_twice)
    for i in range(out.shape[0]):
        out[i] = out[i] * inv_n
        out[i] = out[i] + dy[i]
    return out
