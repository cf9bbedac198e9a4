"""Whole training steps in compiled code: Dense forward/backward (one call each, used by the
Python path too, so both paths run the same instructions), the batch loss, and `train_steps`,
which runs many batches of a dense model in one call.

The compiled loop is a plan, not generated code: layer buffers arrive as typed lists of 2-D
arrays and an int code per layer, so one compilation serves every depth and width (per dtype
and loss/optimizer kernel set). Per-step scalars that Python computes between steps
(optimizer constants such as Adam's bias corrections) arrive precomputed, one row per step,
by the same Python code, so the arithmetic is the same to the bit.
"""

from __future__ import annotations

import math

import numpy as np

from trainctl.kernels.activations import activation_backward_bias_grad, bias_activation_forward
from trainctl.kernels.batches import gather_rows
from trainctl.kernels.jit import njit
from trainctl.kernels.losses import (
    loss_forward_backward,
    sigmoid_binary_crossentropy_backward,
    softmax_crossentropy_backward,
)
from trainctl.kernels.metrics import metric_value
from trainctl.kernels.optimizers import (
    adadelta_update,
    adagrad_update,
    adam_update,
    adamax_update,
    momentum_update,
    rmsprop_centered_update,
    rmsprop_update,
    sgd_update,
)

# how the loss meets the last layer (Trainer.fused)
LOSS_GENERIC, LOSS_SOFTMAX_FUSED, LOSS_SIGMOID_FUSED = 0, 1, 2
# optimizer kernels by code (Optimizer.kernel() names)
OPTIMIZER_CODES = {"sgd_update": 0, "momentum_update": 1, "adam_update": 2, "adamax_update": 3,
                   "adagrad_update": 4, "adadelta_update": 5, "rmsprop_update": 6,
                   "rmsprop_centered_update": 7}


@njit
def dense_forward(x, kernel, bias, z, y, code):
    """z = x @ kernel; y = act(z + bias) (z keeps the biased pre-activation)."""
    np.dot(x, kernel, z)
    bias_activation_forward(z, bias, y, code)


@njit
def dense_backward(x, kernel, z, y, dy, dz, dx, kernel_grad, bias_grad, code, need_dx):
    """dz = act'(z) * dy, bias_grad = sum(dz), kernel_grad = x.T @ dz, dx = dz @ kernel.T."""
    activation_backward_bias_grad(z, y, dy, dz, bias_grad, code)
    np.dot(x.T, dz, kernel_grad)
    if need_dx:
        np.dot(dz, kernel.T, dx)


@njit
def batch_loss(per_row, row_scale):
    """sum(row_scale * per_row): the batch's loss (BLAS dot, in the arrays' dtype)."""
    return np.dot(per_row, row_scale)


@njit
def _update(opt_code, value, grad, s0, s1, s2, c, flag, clipvalue, one):
    if opt_code == 0:
        sgd_update(value, grad, c[0], one, clipvalue)
    elif opt_code == 1:
        momentum_update(value, grad, s0, c[0], c[1], flag, one, clipvalue)
    elif opt_code == 2:
        adam_update(value, grad, s0, s1, c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7], one, clipvalue)
    elif opt_code == 3:
        adamax_update(value, grad, s0, s1, c[0], c[1], c[2], c[3], c[4], one, clipvalue)
    elif opt_code == 4:
        adagrad_update(value, grad, s0, c[0], c[1], one, clipvalue)
    elif opt_code == 5:
        adadelta_update(value, grad, s0, s1, c[0], c[1], c[2], c[3], one, clipvalue)
    elif opt_code == 6:
        rmsprop_update(value, grad, s0, s1, c[0], c[1], c[2], c[3], c[4], one, clipvalue)
    else:
        rmsprop_centered_update(value, grad, s0, s1, s2, c[0], c[1], c[2], c[3], c[4], one, clipvalue)


@njit
def train_steps(x_source, y_source, weight_source, order, has_weights, first_sample, n_samples, batch_size,
                n_steps, x_buf, y_buf, row_scale, per_row, loss_grad, unit,
                kernels, biases, kernel_grads, bias_grads, zs, ys, dzs, dxs, codes, linear_code,
                loss_mode, loss_code, metric_codes, values, totals,
                opt_code, flat_value, flat_grad, slot0, slot1, slot2, constants, flag, clipvalue):
    """Up to `n_steps` training steps of a Dense stack on rows order[first_sample:] of the
    source, in batches of `batch_size` (the last may be partial). Exactly Trainer.train_batch
    per step: gather, forward, loss (+ its gradient), metrics, backward, optimizer update.

    values[step] = [loss, *metrics] (before the update, float64); totals += values * size in
    step order, as fit's epoch sums. Stops after a step whose loss is not finite (the caller's
    TerminateOnNaN sees that batch last). Returns the number of steps run."""
    n_layers = len(kernels)
    n_metrics = metric_codes.shape[0]
    one = unit[1]
    for step in range(n_steps):
        start = first_sample + step * batch_size
        if start >= n_samples:
            return step
        count = min(batch_size, n_samples - start)
        gather_rows(x_source, order, start, count, x_buf)
        gather_rows(y_source, order, start, count, y_buf)
        scale = row_scale[:count]
        unit[0] = 1.0 / count
        if has_weights:
            inv = unit[0]
            for i in range(count):
                scale[i] = weight_source[order[start + i]]
                scale[i] = scale[i] * inv
        else:
            for i in range(count):
                scale[i] = 1.0 / count
        # forward
        x = x_buf[:count]
        for layer in range(n_layers):
            z = zs[layer][:count]
            y = ys[layer][:count]
            dense_forward(x, kernels[layer], biases[layer], z, y, codes[layer])
            x = y
        out = x
        yb = y_buf[:count]
        rows_loss = per_row[:count]
        grad = loss_grad[:count]
        if loss_mode == LOSS_SOFTMAX_FUSED:
            softmax_crossentropy_backward(loss_code, yb, out, scale, rows_loss, grad)
        elif loss_mode == LOSS_SIGMOID_FUSED:
            sigmoid_binary_crossentropy_backward(yb, out, scale, rows_loss, grad)
        else:
            loss_forward_backward(loss_code, yb, out, scale, rows_loss, grad, True)
        loss_value = np.float64(batch_loss(rows_loss, scale))
        values[step, 0] = loss_value
        for m in range(n_metrics):
            values[step, 1 + m] = metric_value(metric_codes[m], yb, out)
        # backward
        dy = grad
        for layer in range(n_layers - 1, -1, -1):
            x_in = x_buf[:count] if layer == 0 else ys[layer - 1][:count]
            code = linear_code if (layer == n_layers - 1 and loss_mode != LOSS_GENERIC) else codes[layer]
            dense_backward(x_in, kernels[layer], zs[layer][:count], ys[layer][:count], dy, dzs[layer][:count],
                           dxs[layer][:count], kernel_grads[layer], bias_grads[layer], code, layer > 0)
            dy = dxs[layer][:count]
        _update(opt_code, flat_value, flat_grad, slot0, slot1, slot2, constants[step], flag, clipvalue, one)
        for m in range(1 + n_metrics):
            totals[m] += values[step, m] * count
        if not math.isfinite(loss_value):
            return step + 1
    return n_steps
