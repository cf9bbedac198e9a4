"""Many training steps of a layer plan in one compiled call (Keras `steps_per_execution`), the
kernels behind trainctl/train/compiled.py: `train_plan_steps` for Dense and Dropout over 2-D
activations, here with the pieces of a step every loop shares; kernels/general_plan_steps.py
holds the general plan's loops (conv, pooling, normalization, views, recurrent, Dense of any
rank; their per-layer dispatch in kernels/plan_layers.py). Separate functions so that a model
pays only its own loop's compile time.

The plan is data, not generated code: per layer an int kind and its buffers in typed lists,
so one compilation serves every depth, width and mix of layers (per dtype).
Each step runs exactly the kernels Trainer.train_batch runs from Python, in the same order:
gather, forward (steps.dense_forward / layers.dropout_forward / conv_steps.conv_forward / the
pooling, normalization and activation kernels the layers call), the loss and its gradient, the
weight-regularizer penalties (optimizers.l1l2_penalty), metrics, backward (the layers' backward
kernels), the regularizer gradients (optimizers.l1l2_add_grad), the optimizer update.
What Python computes between steps arrives precomputed by the same Python code: the optimizer's
per-step constants (one row per step) and each Dropout layer's uniforms (its generator's draws
for the chunk, in step order), so results are the same to the bit.
"""

from __future__ import annotations

import math

import numpy as np

from trainctl.jit import njit
from trainctl.kernels.batches import gather_rows
from trainctl.kernels.layers import dropout_forward
from trainctl.kernels.losses import (
    loss_forward_backward,
    sigmoid_binary_crossentropy_backward,
    softmax_crossentropy_backward,
)
from trainctl.kernels.metrics import metric_value
from trainctl.kernels.noise import (
    multiply,
)
from trainctl.kernels.optimizers import l1l2_add_grad, l1l2_penalty, l2_norm
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


# -- the pieces of a step both kernels share (Trainer.train_batch's, in its order) -----------
# inline="always": inlined in numba's IR, so the loss and metric kernels are linked into each
# kernel once (as separate functions they were optimised twice: +4-8 s of the first compile)
@njit(inline="always")
def next_batch(x_source, y_source, weight_source, order, has_weights, start, count, positions,
                x_buf, y_buf, row_scale, unit):
    """Gather the batch's rows and write Trainer._row_scale's scale (rows = count * positions
    loss rows, each sample's weight / rows); returns the scale view. unit[0] = 1 / rows."""
    gather_rows(x_source, order, start, count, x_buf)
    gather_rows(y_source, order, start, count, y_buf)
    rows = count * positions
    scale = row_scale[:rows]
    unit[0] = 1.0 / rows
    if has_weights:
        inv = unit[0]
        for i in range(count):
            for p in range(positions):
                scale[i * positions + p] = weight_source[order[start + i]]
                scale[i * positions + p] = scale[i * positions + p] * inv
    else:
        for i in range(rows):
            scale[i] = 1.0 / rows
    return scale


@njit(inline="always")
def step_loss(loss_mode, loss_code, yb, out, scale, rows_loss, grad):
    """The per-row loss and its gradient (fused with the last activation when loss_mode says
    so), then the batch loss in float64."""
    if loss_mode == LOSS_SOFTMAX_FUSED:
        softmax_crossentropy_backward(loss_code, yb, out, scale, rows_loss, grad)
    elif loss_mode == LOSS_SIGMOID_FUSED:
        sigmoid_binary_crossentropy_backward(yb, out, scale, rows_loss, grad)
    else:
        loss_forward_backward(loss_code, yb, out, scale, rows_loss, grad, True)
    return np.float64(batch_loss(rows_loss, scale))


@njit(inline="always")
def record_step(values, step, loss_value, metric_codes, yb, out):
    """values[step] = [loss, *metrics] on the outputs before the update (float64)."""
    values[step, 0] = loss_value
    for m in range(metric_codes.shape[0]):
        values[step, 1 + m] = metric_value(metric_codes[m], yb, out)


@njit(inline="always")
def _add_totals(totals, values, step, count):
    for m in range(values.shape[1]):
        totals[m] += values[step, m] * count


@njit
def _apply_update(opt_code, value, grad, s0, s1, s2, c, flag, clipvalue, one, clipnorm, bounds, clip_scale):
    """Optimizer.apply: one update over the flat buffer, or under clipnorm (Keras: per weight)
    its per-weight path, each weight's segment bounds[k]:bounds[k + 1] rescaled by
    clipnorm / its L2 norm when that exceeds clipnorm (Optimizer._clip_arguments)."""
    if clipnorm <= 0.0:
        _update(opt_code, value, grad, s0, s1, s2, c, flag, clipvalue, one)
        return
    for k in range(bounds.shape[0] - 1):
        a, b = bounds[k], bounds[k + 1]
        norm = l2_norm(grad[a:b])
        clip_scale[0] = 1.0
        if norm > clipnorm:
            clip_scale[0] = clipnorm / norm  # float64, then rounded to the weights' dtype
        _update(opt_code, value[a:b], grad[a:b], s0[a:b], s1[a:b], s2[a:b], c, flag, clipvalue, clip_scale[0])


@njit(inline="always")
def end_step(opt_code, value, grad, s0, s1, s2, c, flag, clipvalue, one, clipnorm, bounds, clip_scale, totals, values,
             step, count, loss_value):
    """The step's update and its share of the epoch sums; True when its loss is not finite
    (the chunk then ends after this step, as the Python loop's NaN check stops the fit)."""
    _apply_update(opt_code, value, grad, s0, s1, s2, c, flag, clipvalue, one, clipnorm, bounds, clip_scale)
    _add_totals(totals, values, step, count)
    return not math.isfinite(loss_value)


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
                     opt_code, flat_value, flat_grad, slot0, slot1, slot2, constants, flag, clipvalue,
                     clipnorm, clip_bounds, clip_scale):
    """Up to `n_steps` training steps on rows order[first_sample:] of the source, in batches of
    `batch_size` (the last may be partial); per step exactly Trainer.train_batch.

    Dense layer l: kernels/biases/grads and zs/ys/dzs/dxs [rows, units] buffers, codes[l] its
    activation. Dropout layer l: ys/dxs are 2-D views of its 1-D y/dx buffers (ys_flat,
    dxs_flat), masks[l] its mask, uniforms[l] the chunk's draws read from offsets[l] on,
    rates[l], features[l] values per sample. x_flat / grad_flat: 1-D views of x_buf / loss_grad.
    values[step] = [loss, *metrics] (before the update, float64); totals += values * size in
    step order. Stops after a step whose loss is not finite. Returns the number of steps run."""
    n_layers = kinds.shape[0]
    one = unit[1]
    for step in range(n_steps):
        start = first_sample + step * batch_size
        if start >= n_samples:
            return step
        count = min(batch_size, n_samples - start)
        scale = next_batch(x_source, y_source, weight_source, order, has_weights, start, count, 1,
                            x_buf, y_buf, row_scale, unit)
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
        grad = loss_grad[:count]
        loss_value = step_loss(loss_mode, loss_code, yb, out, scale, per_row[:count], grad)
        if regularized:
            loss_value = loss_value + _regularization_loss(kinds, kernels, biases, reg_which, reg_rates)
        record_step(values, step, loss_value, metric_codes, yb, out)
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
        if end_step(opt_code, flat_value, flat_grad, slot0, slot1, slot2, constants[step], flag, clipvalue, one,
                    clipnorm, clip_bounds, clip_scale, totals, values, step, count, loss_value):
            return step + 1
    return n_steps
