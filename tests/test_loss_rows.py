"""kernels/loss_rows.py (one kernel per loss, for the Python path) against the generic
losses.loss_forward_backward (the compiled loop's): the same per-row losses and gradients to the
bit for every loss code, with and without the gradient, in float32 (and float64 for one loss per row family), with clipped
and NaN inputs."""

from __future__ import annotations

import numpy as np
import pytest

from trainctl.kernels.codes import LOSS_CODES

CASES = [(name, np.float32) for name in sorted(LOSS_CODES)] + [  # float64: one loss of each row family
    ("mean_squared_error", np.float64), ("categorical_crossentropy", np.float64), ("binary_crossentropy", np.float64)]


@pytest.mark.parametrize("name,dtype", CASES, ids=lambda c: c if isinstance(c, str) else np.dtype(c).name)
def test_each_loss_kernel_is_the_generic_kernel_bit_for_bit(name, dtype):
    from trainctl.kernels.loss_rows import ROWS
    from trainctl.kernels.losses import loss_forward_backward

    code = LOSS_CODES[name]
    rng = np.random.default_rng(code)
    rows, cols = 9, 4
    y_pred = rng.random((rows, cols)).astype(dtype)
    y_pred[0, 0], y_pred[1, 1], y_pred[2, 2] = 0.0, 1.0, np.nan  # clips and NaN
    if name == "sparse_categorical_crossentropy":
        y_true = rng.integers(0, cols, (rows, 1)).astype(dtype)
    else:
        y_true = (rng.random((rows, cols)) * (2 if "hinge" in name else 1)).astype(dtype)
    scale = rng.random(rows).astype(dtype)
    for need_grad in (True, False):
        outputs = []
        for kernel in ("generic", "rows"):
            per_row = np.full(rows, 7, dtype)
            grad = np.full((rows, cols), 7, dtype)
            if kernel == "generic":
                loss_forward_backward(code, y_true, y_pred, scale, per_row, grad, need_grad)
            else:
                ROWS[code](y_true, y_pred, scale, per_row, grad, need_grad)
            outputs.append((per_row.tobytes(), grad.tobytes()))
        assert outputs[0] == outputs[1], (name, need_grad)
