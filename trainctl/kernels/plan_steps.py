"""`train_plan_steps`: many training steps of a layer plan in one compiled call (Keras
`steps_per_execution`), the kernel behind trainctl/train/compiled.py.

The plan is data, not generated code: per layer an int kind (Dense or Dropout) and its buffers
in typed lists, so one compilation serves every depth, width and mix of the two (per dtype).
Each step runs exactly the kernels Trainer.train_batch runs from Python, in the same order:
gather, forward (steps.dense_forward / layers.dropout_forward), the loss and its gradient, the
weight-regularizer penalties (optimizers.l1l2_penalty), metrics, backward (steps.dense_backward
/ noise.multiply), the regularizer gradients (optimizers.l1l2_add_grad), the optimizer update.
What Python computes between steps arrives precomputed by the same Python code: the optimizer's
per-step constants (one row per step) and each Dropout layer's uniforms (its generator's draws
for the chunk, in step order), so results are the same to the bit.
"""

from __future__ import annotations

import math

import numpy as np

from trainctl.kernels.batches import gather_rows
from trainctl.kernels.jit import njit
from trainctl.kernels.layers import dropout_forward
from trainctl.kernels.losses import (
    loss_forward_backward,
    sigmoid_binary_crossentropy_backward,
    softmax_crossentropy_backward,
)
from trainctl.kernels.metrics import metric_value
from trainctl.kernels.noise import multiply
from trainctl.kernels.optimizers import l1l2_add_grad, l1l2_penalty
from trainctl.kernels.steps import (
    LOSS_GENERIC,
    LOSS_SIGMOID_FUSED,
    LOSS_SOFTMAX_FUSED,
    _update,
    batch_loss,
    dense_backward,
    dense_forward,
)

# layer kinds of the plan
KIND_DENSE, KIND_DROPOUT = 0, 1
# a weight-regularizer row: which weight of the layer (or none), then its rates
REG_NONE, REG_KERNEL, REG_BIAS = -1, 0, 1


@njit
def _regularization_loss(kinds, kernels, biases, reg_which, reg_rates):
    """Model.regularization_loss: per layer the sum over its regularized weights in weight
    order, then the sum over layers (float64, in that order)."""
    total = 0.0
    for layer in range(kinds.shape[0]):
        layer_sum = 0.0
        for r in range(reg_which.shape[1]):
            which = reg_which[layer, r]
            if which == REG_KERNEL:
                layer_sum += l1l2_penalty(kernels[layer].reshape(-1), reg_rates[layer, r, 0], reg_rates[layer, r, 1])
            elif which == REG_BIAS:
                layer_sum += l1l2_penalty(biases[layer], reg_rates[layer, r, 0], reg_rates[layer, r, 1])
        total += layer_sum
    return total


@njit
def _add_regularization_grads(kinds, kernels, biases, kernel_grads, bias_grads, reg_which, reg_grad_rates):
    for layer in range(kinds.shape[0]):
        for r in range(reg_which.shape[1]):
            which = reg_which[layer, r]
            if which == REG_KERNEL:
                l1l2_add_grad(kernels[layer].reshape(-1), kernel_grads[layer].reshape(-1),
                              reg_grad_rates[layer, r, 0], reg_grad_rates[layer, r, 1])
            elif which == REG_BIAS:
                l1l2_add_grad(biases[layer], bias_grads[layer], reg_grad_rates[layer, r, 0], reg_grad_rates[layer, r, 1])


@njit
def train_plan_steps(x_source, y_source, weight_source, order, has_weights, first_sample, n_samples, batch_size,
                     n_steps, x_buf, x_flat, y_buf, row_scale, per_row, loss_grad, grad_flat, unit,
                     kinds, kernels, biases, kernel_grads, bias_grads, zs, ys, dzs, dxs, codes, linear_code,
                     ys_flat, dxs_flat, masks, uniforms, rates, features, offsets,
                     regularized, reg_which, reg_rates, reg_grad_rates,
                     loss_mode, loss_code, metric_codes, values, totals,
                     opt_code, flat_value, flat_grad, slot0, slot1, slot2, constants, flag, clipvalue):
    """Up to `n_steps` training steps on rows order[first_sample:] of the source, in batches of
    `batch_size` (the last may be partial); per step exactly Trainer.train_batch.

    Dense layer l: kernels/biases/grads and zs/ys/dzs/dxs [rows, units] buffers, codes[l] its
    activation. Dropout layer l: ys/dxs are 2-D views of its 1-D y/dx buffers (ys_flat,
    dxs_flat), masks[l] its mask, uniforms[l] the chunk's draws read from offsets[l] on,
    rates[l], features[l] values per sample. x_flat / grad_flat: 1-D views of x_buf / loss_grad.
    values[step] = [loss, *metrics] (before the update, float64); totals += values * size in
    step order. Stops after a step whose loss is not finite. Returns the number of steps run."""
    n_layers = kinds.shape[0]
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
        for layer in range(n_layers):
            x = x_buf[:count] if layer == 0 else ys[layer - 1][:count]
            if kinds[layer] == KIND_DENSE:
                dense_forward(x, kernels[layer], biases[layer], zs[layer][:count], ys[layer][:count], codes[layer])
            else:
                size = count * features[layer]
                x1 = x_flat[:size] if layer == 0 else ys_flat[layer - 1][:size]
                if rates[layer] == 0.0:  # Dropout.forward passes x on and draws nothing
                    ys_flat[layer][:size] = x1
                else:
                    start_u = offsets[layer]
                    dropout_forward(x1, uniforms[layer][start_u:start_u + size], rates[layer], masks[layer][:size],
                                    ys_flat[layer][:size])
                    offsets[layer] = start_u + size
        out = ys[n_layers - 1][:count]
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
        if regularized:
            loss_value = loss_value + _regularization_loss(kinds, kernels, biases, reg_which, reg_rates)
        values[step, 0] = loss_value
        for m in range(n_metrics):
            values[step, 1 + m] = metric_value(metric_codes[m], yb, out)
        # backward
        for layer in range(n_layers - 1, -1, -1):
            if kinds[layer] == KIND_DENSE:
                dy = grad if layer == n_layers - 1 else dxs[layer + 1][:count]
                x_in = x_buf[:count] if layer == 0 else ys[layer - 1][:count]
                code = linear_code if (layer == n_layers - 1 and loss_mode != LOSS_GENERIC) else codes[layer]
                dense_backward(x_in, kernels[layer], zs[layer][:count], ys[layer][:count], dy, dzs[layer][:count],
                               dxs[layer][:count], kernel_grads[layer], bias_grads[layer], code, layer > 0)
            elif layer > 0:  # a first-layer dropout's dx is never used
                size = count * features[layer]
                dy1 = grad_flat[:size] if layer == n_layers - 1 else dxs_flat[layer + 1][:size]
                if rates[layer] == 0.0:
                    dxs_flat[layer][:size] = dy1
                else:
                    multiply(dy1, masks[layer][:size], dxs_flat[layer][:size])
        if regularized:
            _add_regularization_grads(kinds, kernels, biases, kernel_grads, bias_grads, reg_which, reg_grad_rates)
        _update(opt_code, flat_value, flat_grad, slot0, slot1, slot2, constants[step], flag, clipvalue, one)
        for m in range(1 + n_metrics):
            totals[m] += values[step, m] * count
        if not math.isfinite(loss_value):
            return step + 1
    return n_steps
