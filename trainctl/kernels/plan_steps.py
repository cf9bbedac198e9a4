"""Many training steps of a layer plan in one compiled call (Keras `steps_per_execution`), the
kernels behind trainctl/train/compiled.py: `train_plan_steps` for Dense and Dropout over 2-D
activations, `train_spatial_plan_steps` for the general plan (conv, pooling, batch
normalization, activation, views, Dense of any rank; see "the general plan" below) and
`train_sequence_plan_steps`, the general plan with the recurrent and Embedding kinds. Three
functions so that a model pays only its own loop's compile time.

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
from trainctl.kernels.activations import activation_backward, activation_forward
from trainctl.kernels.advanced_activations import elementwise_backward, elementwise_forward
from trainctl.kernels.advanced_activations import prelu_backward, prelu_forward, softmax_backward, softmax_forward
from trainctl.kernels.batches import gather_rows
from trainctl.kernels.conv_steps import conv_backward, conv_forward
from trainctl.kernels.layers import dropout_forward
from trainctl.kernels.losses import (
    loss_forward_backward,
    sigmoid_binary_crossentropy_backward,
    softmax_crossentropy_backward,
)
from trainctl.kernels.metrics import metric_value
from trainctl.kernels.noise import multiply
from trainctl.kernels.noise import NOISE_SPATIAL_DROPOUT, noise_backward, noise_forward
from trainctl.kernels.normalization import batch_norm_backward, batch_norm_forward
from trainctl.kernels.normalization import layer_norm_backward, layer_norm_forward
from trainctl.kernels.layers import add_activity_grad
from trainctl.kernels.optimizers import l1l2_add_grad, l1l2_penalty, l2_norm
from trainctl.kernels.pooling import (
    avg_pool_backward,
    avg_pool_forward,
    global_pool_backward,
    global_pool_forward,
    max_pool_backward,
    max_pool_forward,
)
from trainctl.kernels.recurrent_steps import (
    embedding_step_backward,
    embedding_step_forward,
    recurrent_backward,
    recurrent_forward,
)
from trainctl.kernels.resampling import copy_box, upsample_nearest_backward, upsample_nearest_forward
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
def _next_batch(x_source, y_source, weight_source, order, has_weights, start, count, positions,
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
def _batch_loss(loss_mode, loss_code, yb, out, scale, rows_loss, grad):
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
def _record(values, step, loss_value, metric_codes, yb, out):
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
        scale = _next_batch(x_source, y_source, weight_source, order, has_weights, start, count, 1,
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
        loss_value = _batch_loss(loss_mode, loss_code, yb, out, scale, per_row[:count], grad)
        if regularized:
            loss_value = loss_value + _regularization_loss(kinds, kernels, biases, reg_which, reg_rates)
        _record(values, step, loss_value, metric_codes, yb, out)
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
        _apply_update(opt_code, flat_value, flat_grad, slot0, slot1, slot2, constants[step], flag, clipvalue, one,
                      clipnorm, clip_bounds, clip_scale)
        _add_totals(totals, values, step, count)
        if not math.isfinite(loss_value):
            return step + 1
    return n_steps


# -- the general plan: every layer's buffers flat ------------------------------------------
# Layers of every rank in one compiled function: per layer a kind, a row of ints (geo), a row
# of floats (fparams), an activation code, and slots into three typed lists of flat buffers
# (bufs in the model's dtype, wide float64, ints int64), reshaped here to what each kernel
# takes. bufs[0] is the gathered input batch and bufs[1] the loss gradient; x_slot / dy_slot
# name the buffer a layer reads forward / backward, so Flatten and Reshape (views: their
# output is their input) cost nothing and appear in no loop. Only train_plan_steps' dense and
# dropout models skip this function, so they do not pay its compile time.
KIND_VIEW, KIND_ACTIVATION, KIND_CONV, KIND_MAX_POOL, KIND_AVG_POOL, KIND_BATCH_NORM, KIND_GLOBAL_POOL = \
    2, 3, 4, 5, 6, 7, 8
KIND_RECURRENT, KIND_EMBEDDING = 20, 21  # kernels/recurrent_steps.py: geo[G_A:] its R_* row / output_dim
KIND_ELEMENTWISE, KIND_SOFTMAX, KIND_LAYER_NORM, KIND_PRELU, KIND_UPSAMPLE, KIND_COPY_BOX, KIND_NOISE = \
    9, 10, 11, 12, 13, 14, 15
N_FPARAMS = 4  # float options per layer
# bufs slots of a layer (S_AUX + i: a kind's own scratch, see compiled.py)
S_Y, S_DX, S_Z, S_DZ, S_W0, S_W0_GRAD, S_W1, S_W1_GRAD, S_AUX = 0, 1, 2, 3, 4, 5, 6, 7, 8
N_SLOTS = S_AUX + 6
# geo columns: values per sample in and out, then per kind
G_IN, G_OUT, G_A = 0, 1, 2
N_GEO = G_A + 16


@njit
def _spatial_forward(layer, kind, count, geo, fparams, code, x, bufs, slots, wide, wide_slots, ints, int_slots,
                     uniforms, normals, offsets):
    """Layer `layer`'s forward on the flat input x (count samples) into its own buffers."""
    g = geo[layer]
    sl = slots[layer]
    if kind == KIND_DENSE:  # Dense.forward: rows of the last axis
        n_in, units = g[G_A], g[G_A + 1]
        rows = count * g[G_IN] // n_in
        dense_forward(x.reshape(rows, n_in), bufs[sl[S_W0]].reshape(n_in, units), bufs[sl[S_W1]],
                      bufs[sl[S_Z]][:rows * units].reshape(rows, units),
                      bufs[sl[S_Y]][:rows * units].reshape(rows, units), code)
    elif kind == KIND_DROPOUT:  # Dropout.forward (training, rate > 0: rate 0 is a view)
        size = x.shape[0]
        start_u = offsets[layer]
        dropout_forward(x, uniforms[layer][start_u:start_u + size], fparams[layer, 0], bufs[sl[S_AUX]][:size],
                        bufs[sl[S_Y]][:size])
        offsets[layer] = start_u + size
    elif kind == KIND_ACTIVATION:  # Activation.forward: over the last axis
        last = g[G_A]
        rows = x.shape[0] // last
        activation_forward(x.reshape(rows, last), bufs[sl[S_Y]][:rows * last].reshape(rows, last), code)
    elif kind == KIND_CONV:  # _Conv.forward (conv_steps.conv_forward)
        h, w, c, filters = g[G_A], g[G_A + 1], g[G_A + 2], g[G_A + 3]
        kh, kw = g[G_A + 4], g[G_A + 5]
        out_h, out_w = g[G_A + 12], g[G_A + 13]
        rows = count * out_h * out_w
        conv_forward(x.reshape(count, h, w, c), bufs[sl[S_W0]].reshape(kh * kw * c, filters), bufs[sl[S_W1]],
                     kh, kw, g[G_A + 6], g[G_A + 7], g[G_A + 8], g[G_A + 9], g[G_A + 10], g[G_A + 11],
                     out_h, out_w, g[G_A + 14], g[G_A + 15], bufs[sl[S_AUX]],
                     bufs[sl[S_Z]][:rows * filters].reshape(rows, filters),
                     bufs[sl[S_Y]][:rows * filters].reshape(rows, filters), code)
    elif kind == KIND_MAX_POOL or kind == KIND_AVG_POOL:  # _Pooling.forward
        h, w, c, out_h, out_w = g[G_A], g[G_A + 1], g[G_A + 2], g[G_A + 9], g[G_A + 10]
        x4 = x.reshape(count, h, w, c)
        y4 = bufs[sl[S_Y]][:count * out_h * out_w * c].reshape(count, out_h, out_w, c)
        if kind == KIND_MAX_POOL:
            max_pool_forward(x4, g[G_A + 3], g[G_A + 4], g[G_A + 5], g[G_A + 6], g[G_A + 7], g[G_A + 8], y4,
                             ints[int_slots[layer]][:count * out_h * out_w * c].reshape(count, out_h, out_w, c))
        else:
            avg_pool_forward(x4, g[G_A + 3], g[G_A + 4], g[G_A + 5], g[G_A + 6], g[G_A + 7], g[G_A + 8], y4)
    elif kind == KIND_GLOBAL_POOL:  # _GlobalPooling.forward
        positions, c = g[G_A], g[G_A + 1]
        global_pool_forward(x.reshape(count, positions, c), bufs[sl[S_Y]][:count * c].reshape(count, c), g[G_A + 2] == 1)
    elif kind == KIND_BATCH_NORM:  # BatchNormalization.forward(training=True)
        pre, k, post = g[G_A], g[G_A + 1], g[G_A + 2]
        size = x.shape[0]
        shape3 = (count * pre, k, post)
        batch_norm_forward(x.reshape(shape3), bufs[sl[S_W0]], bufs[sl[S_W1]], fparams[layer, 0], True,
                           fparams[layer, 1], bufs[sl[S_AUX]], bufs[sl[S_AUX + 1]],
                           wide[wide_slots[layer, 0]], wide[wide_slots[layer, 1]], bufs[sl[S_AUX + 2]],
                           bufs[sl[S_AUX + 3]], bufs[sl[S_AUX + 4]], bufs[sl[S_AUX + 5]][:size].reshape(shape3),
                           bufs[sl[S_Y]][:size].reshape(shape3))
    elif kind >= KIND_ELEMENTWISE:
        _added_forward(layer, kind, count, geo, fparams, x, bufs, slots, wide, wide_slots, ints, int_slots,
                       uniforms, normals, offsets)


@njit
def _added_forward(layer, kind, count, geo, fparams, x, bufs, slots, wide, wide_slots, ints, int_slots,
                   uniforms, normals, offsets):
    """The forward of the kinds from KIND_ELEMENTWISE on (a function of its own: the loop's
    body stays small and each branch calls the layer's own kernel)."""
    g = geo[layer]
    sl = slots[layer]
    size = x.shape[0]
    y = bufs[sl[S_Y]][:count * g[G_OUT]]
    if kind == KIND_ELEMENTWISE:  # _ElementWise.forward
        elementwise_forward(g[G_A], x, fparams[layer], y)
    elif kind == KIND_SOFTMAX:  # Softmax.forward over [n * pre, k, post]
        shape3 = (count * g[G_A], g[G_A + 1], g[G_A + 2])
        softmax_forward(x.reshape(shape3), y.reshape(shape3))
    elif kind == KIND_LAYER_NORM:  # LayerNormalization.forward
        pre, k, post = g[G_A], g[G_A + 1], g[G_A + 2]
        shape3 = (count * pre, k, post)
        layer_norm_forward(x.reshape(shape3), bufs[sl[S_W0]], bufs[sl[S_W1]], fparams[layer, 0],
                           bufs[sl[S_AUX]][:count * pre * post].reshape(count * pre, post),
                           bufs[sl[S_AUX + 1]][:size].reshape(shape3), y.reshape(shape3))
    elif kind == KIND_PRELU:  # PReLU.forward over [n, positions]
        positions = g[G_A]
        prelu_forward(x.reshape(count, positions), bufs[sl[S_W0]], ints[int_slots[layer]],
                      y.reshape(count, positions))
    elif kind == KIND_UPSAMPLE:  # _UpSampling.forward (nearest, channels_last)
        h, w, c, sr, sc = g[G_A], g[G_A + 1], g[G_A + 2], g[G_A + 3], g[G_A + 4]
        upsample_nearest_forward(x.reshape(count, h, w, c), sr, sc, y.reshape(count, h * sr, w * sc, c))
    elif kind == KIND_COPY_BOX:  # _Slicing.forward: x into the box of y
        a = g[G_A:G_A + 3]
        b = g[G_A + 3:G_A + 6]
        copy_box(x.reshape(count, a[0], a[1], a[2]), g[G_A + 6:G_A + 9], y.reshape(count, b[0], b[1], b[2]),
                 g[G_A + 9:G_A + 12], g[G_A + 12:G_A + 15])
    elif kind == KIND_NOISE:  # the noise layers' forward(training=True), on the chunk's draws
        draws = count * g[G_A + 3]
        start = offsets[layer]
        noise_forward(g[G_A], x, uniforms[layer][start:start + draws], normals[layer][start:start + draws],
                      fparams[layer], g[G_A + 1], g[G_A + 2] == 1, bufs[sl[S_AUX]], y)
        offsets[layer] = start + draws


@njit
def _added_backward(layer, kind, count, geo, fparams, x, dy, need_dx, bufs, slots, wide, wide_slots, ints,
                    int_slots):
    """The backward of the kinds from KIND_ELEMENTWISE on; a last Softmax fused with the loss
    (fparams[layer, 0] = -1) passes dy on."""
    g = geo[layer]
    sl = slots[layer]
    size = dy.shape[0]
    dx = bufs[sl[S_DX]][:count * g[G_IN]]
    if kind == KIND_LAYER_NORM:  # LayerNormalization.backward (gamma/beta grads whatever need_dx)
        pre, k, post = g[G_A], g[G_A + 1], g[G_A + 2]
        shape3 = (count * pre, k, post)
        layer_norm_backward(dy.reshape(shape3), bufs[sl[S_AUX + 1]][:size].reshape(shape3), bufs[sl[S_W0]],
                            bufs[sl[S_AUX]][:count * pre * post].reshape(count * pre, post), need_dx,
                            wide[wide_slots[layer, 0]], wide[wide_slots[layer, 1]], bufs[sl[S_W0_GRAD]],
                            bufs[sl[S_W1_GRAD]], dx.reshape(shape3))
    elif kind == KIND_PRELU:  # PReLU.backward (the alpha grad whatever need_dx)
        positions = g[G_A]
        prelu_backward(x.reshape(count, positions), dy.reshape(count, positions), bufs[sl[S_W0]],
                       ints[int_slots[layer]], need_dx, wide[wide_slots[layer, 0]], bufs[sl[S_W0_GRAD]],
                       dx.reshape(count, positions))
    elif not need_dx:
        return
    elif kind == KIND_ELEMENTWISE:
        elementwise_backward(g[G_A], x, dy, fparams[layer], dx)
    elif kind == KIND_SOFTMAX:
        if fparams[layer, 0] < 0:
            dx[:] = dy
        else:
            shape3 = (count * g[G_A], g[G_A + 1], g[G_A + 2])
            softmax_backward(bufs[sl[S_Y]][:size].reshape(shape3), dy.reshape(shape3), dx.reshape(shape3))
    elif kind == KIND_UPSAMPLE:
        h, w, c, sr, sc = g[G_A], g[G_A + 1], g[G_A + 2], g[G_A + 3], g[G_A + 4]
        upsample_nearest_backward(dy.reshape(count, h * sr, w * sc, c), sr, sc, dx.reshape(count, h, w, c))
    elif kind == KIND_COPY_BOX:  # _Slicing.backward: dy's box into dx
        a = g[G_A:G_A + 3]
        b = g[G_A + 3:G_A + 6]
        copy_box(dy.reshape(count, b[0], b[1], b[2]), g[G_A + 9:G_A + 12], dx.reshape(count, a[0], a[1], a[2]),
                 g[G_A + 6:G_A + 9], g[G_A + 12:G_A + 15])
    elif kind == KIND_NOISE:
        channels = g[G_A + 1]
        mask = bufs[sl[S_AUX]][:count * (channels if g[G_A] == NOISE_SPATIAL_DROPOUT else g[G_IN])]
        noise_backward(g[G_A], dy, channels, g[G_A + 2] == 1, mask, dx)


@njit
def _spatial_backward(layer, kind, count, geo, fparams, code, x, dy, need_dx, bufs, slots, wide, wide_slots,
                      ints, int_slots):
    """Layer `layer`'s backward from the flat dy: its weights' grads and (need_dx) its dx."""
    g = geo[layer]
    sl = slots[layer]
    if kind == KIND_DENSE:  # Dense._backward
        n_in, units = g[G_A], g[G_A + 1]
        rows = count * g[G_IN] // n_in
        dense_backward(x.reshape(rows, n_in), bufs[sl[S_W0]].reshape(n_in, units),
                       bufs[sl[S_Z]][:rows * units].reshape(rows, units),
                       bufs[sl[S_Y]][:rows * units].reshape(rows, units), dy.reshape(rows, units),
                       bufs[sl[S_DZ]][:rows * units].reshape(rows, units),
                       bufs[sl[S_DX]][:rows * n_in].reshape(rows, n_in),
                       bufs[sl[S_W0_GRAD]].reshape(n_in, units), bufs[sl[S_W1_GRAD]], code, need_dx)
    elif kind == KIND_DROPOUT:  # Dropout.backward
        if need_dx:
            size = dy.shape[0]
            multiply(dy, bufs[sl[S_AUX]][:size], bufs[sl[S_DX]][:size])
    elif kind == KIND_ACTIVATION:  # Activation.backward (backward_from_preactivation: dx is dy)
        size = dy.shape[0]
        if code < 0:
            bufs[sl[S_DX]][:size] = dy
        else:
            last = g[G_A]
            rows = size // last
            activation_backward(x.reshape(rows, last), bufs[sl[S_Y]][:size].reshape(rows, last),
                                dy.reshape(rows, last), bufs[sl[S_DX]][:size].reshape(rows, last), code)
    elif kind == KIND_CONV:  # _Conv._backward (conv_steps.conv_backward)
        h, w, c, filters = g[G_A], g[G_A + 1], g[G_A + 2], g[G_A + 3]
        kh, kw = g[G_A + 4], g[G_A + 5]
        out_h, out_w = g[G_A + 12], g[G_A + 13]
        rows = count * out_h * out_w
        depth = kh * kw * c
        conv_backward(x.reshape(count, h, w, c), bufs[sl[S_W0]].reshape(depth, filters),
                      bufs[sl[S_Z]].reshape(-1, filters), bufs[sl[S_Y]].reshape(-1, filters),
                      dy.reshape(rows, filters), bufs[sl[S_DZ]].reshape(-1, filters), bufs[sl[S_W1_GRAD]],
                      bufs[sl[S_W0_GRAD]].reshape(depth, filters),
                      bufs[sl[S_AUX + 2]].reshape(-1, filters), kh, kw, g[G_A + 6], g[G_A + 7], g[G_A + 8],
                      g[G_A + 9], g[G_A + 10], g[G_A + 11], out_h, out_w, g[G_A + 14], g[G_A + 15],
                      bufs[sl[S_AUX]], bufs[sl[S_AUX + 1]], bufs[sl[S_DX]].reshape(-1, h, w, c), code, need_dx)
    elif kind == KIND_MAX_POOL or kind == KIND_AVG_POOL:  # _Pooling.backward
        if not need_dx:
            return
        h, w, c, out_h, out_w = g[G_A], g[G_A + 1], g[G_A + 2], g[G_A + 9], g[G_A + 10]
        dy4 = dy.reshape(count, out_h, out_w, c)
        dx4 = bufs[sl[S_DX]][:count * h * w * c].reshape(count, h, w, c)
        if kind == KIND_MAX_POOL:
            max_pool_backward(dy4, ints[int_slots[layer]][:count * out_h * out_w * c].reshape(count, out_h, out_w, c),
                              dx4)
        else:
            avg_pool_backward(dy4, g[G_A + 3], g[G_A + 4], g[G_A + 5], g[G_A + 6], g[G_A + 7], g[G_A + 8], dx4)
    elif kind == KIND_GLOBAL_POOL:  # _GlobalPooling.backward
        if need_dx:
            positions, c = g[G_A], g[G_A + 1]
            global_pool_backward(x.reshape(count, positions, c), bufs[sl[S_Y]][:count * c].reshape(count, c),
                                 dy.reshape(count, c), bufs[sl[S_DX]][:count * positions * c].reshape(count, positions, c),
                                 g[G_A + 2] == 1)
    elif kind == KIND_BATCH_NORM:  # BatchNormalization.backward (training)
        pre, k, post = g[G_A], g[G_A + 1], g[G_A + 2]
        size = dy.shape[0]
        shape3 = (count * pre, k, post)
        batch_norm_backward(dy.reshape(shape3), bufs[sl[S_AUX + 5]][:size].reshape(shape3), bufs[sl[S_W0]],
                            bufs[sl[S_AUX + 4]], True, need_dx, wide[wide_slots[layer, 0]],
                            wide[wide_slots[layer, 1]], bufs[sl[S_W0_GRAD]], bufs[sl[S_W1_GRAD]],
                            bufs[sl[S_DX]][:size].reshape(shape3))
    elif kind >= KIND_ELEMENTWISE:
        _added_backward(layer, kind, count, geo, fparams, x, dy, need_dx, bufs, slots, wide, wide_slots, ints,
                        int_slots)


@njit
def _penalties(bufs, reg_slots, reg_rates):
    """Model.regularization_loss: per layer its regularized weights in weight order, then over
    layers (float64). reg_slots[layer, r] = the weight's bufs index, or -1."""
    total = 0.0
    for layer in range(reg_slots.shape[0]):
        layer_sum = 0.0
        for r in range(reg_slots.shape[1]):
            if reg_slots[layer, r] >= 0:
                layer_sum += l1l2_penalty(bufs[reg_slots[layer, r]], reg_rates[layer, r, 0], reg_rates[layer, r, 1])
        total += layer_sum
    return total


@njit
def _activity_penalties(bufs, slots, act_slots, act_rates, geo, count):
    """Model.activity_loss(count): per layer with an activity regularizer penalty(y) / count,
    summed over layers (float64)."""
    total = 0.0
    for layer in range(act_slots.shape[0]):
        if act_slots[layer] >= 0:
            y = bufs[slots[layer, S_Y]][:count * geo[layer, G_OUT]]
            total += l1l2_penalty(y, act_rates[layer, 0], act_rates[layer, 1]) / count
    return total


def _general_plan_steps(sequences: bool):
    """The general plan's loop, made twice: with the recurrent and Embedding kinds (`sequences`)
    and without. numba links and re-optimises every function a kernel can reach, so one loop for
    all kinds made a conv model's first compile pay for the recurrent time loops too (70.6 ->
    156.3 CPU-s, measured cold at load 10-15); `sequences` is a constant of the closure, and numba
    prunes the branch it turns off before typing, so each loop compiles only its own kinds
    (jit._named_by_variant gives the two their own names)."""

    def train_general_plan_steps(x_source, y_source, weight_source, order, has_weights, first_sample, n_samples,
                                 batch_size, n_steps, x_buf, y_buf, row_scale, per_row, loss_grad, unit, positions,
                                 kinds, geo, fparams, codes, back_codes, x_slots, dy_slots, need_dx, out_slot, bufs,
                                 slots, wide, wide_slots, ints, int_slots, uniforms, normals, offsets, regularized,
                                 reg_slots, reg_grad_slots, reg_rates, reg_grad_rates, activity, act_slots, act_rates,
                                 act_grad_rates, loss_mode, loss_code, metric_codes, values, totals, opt_code,
                                 flat_value, flat_grad, slot0, slot1, slot2, constants, flag, clipvalue, clipnorm,
                                 clip_bounds, clip_scale):
        """train_plan_steps for any stack of the general plan's kinds (see above); per step exactly
        Trainer.train_batch. x_slots[l] / dy_slots[l]: the bufs index layer l reads forward /
        backward; out_slot: the model's output; codes[l] / back_codes[l]: the activation forward
        and backward (for the last layer with a fused loss: linear, or -1 for an Activation layer,
        whose dx is then dy).
        Returns the number of steps run (a non-finite loss ends the chunk after its step)."""
        n_layers = kinds.shape[0]
        one = unit[1]
        units = loss_grad.shape[1]
        for step in range(n_steps):
            start = first_sample + step * batch_size
            if start >= n_samples:
                return step
            count = min(batch_size, n_samples - start)
            scale = _next_batch(x_source, y_source, weight_source, order, has_weights, start, count, positions,
                                x_buf, y_buf, row_scale, unit)
            for layer in range(n_layers):
                kind = kinds[layer]
                if kind != KIND_VIEW:
                    x = bufs[x_slots[layer]][:count * geo[layer, G_IN]]
                    if sequences:
                        _sequence_forward(layer, kind, count, geo, fparams, codes[layer], x, bufs, slots, wide,
                                          wide_slots, ints, int_slots, uniforms, normals, offsets)
                    else:
                        _spatial_forward(layer, kind, count, geo, fparams, codes[layer], x, bufs, slots, wide,
                                         wide_slots, ints, int_slots, uniforms, normals, offsets)
            rows = count * positions
            out = bufs[out_slot][:rows * units].reshape(rows, units)
            yb = y_buf[:count].reshape(rows, units)
            grad = loss_grad[:rows]
            loss_value = _batch_loss(loss_mode, loss_code, yb, out, scale, per_row[:rows], grad)
            if regularized:
                loss_value = loss_value + _penalties(bufs, reg_slots, reg_rates)
            if activity:
                loss_value = loss_value + _activity_penalties(bufs, slots, act_slots, act_rates, geo, count)
            _record(values, step, loss_value, metric_codes, yb, out)
            for layer in range(n_layers - 1, -1, -1):
                kind = kinds[layer]
                if kind != KIND_VIEW:
                    x = bufs[x_slots[layer]][:count * geo[layer, G_IN]]
                    dy = bufs[dy_slots[layer]][:count * geo[layer, G_OUT]]
                    if act_slots[layer] >= 0:  # dLoss/dy + the activity penalty's grad (Dense/_ConvBase backward)
                        act_grad_rates[layer, 2] = 1.0 / count
                        dy = add_activity_grad(dy, bufs[slots[layer, S_Y]][:dy.shape[0]], bufs[act_slots[layer]],
                                               act_grad_rates[layer, 0], act_grad_rates[layer, 1], act_grad_rates[layer, 2])
                    if sequences:
                        _sequence_backward(layer, kind, count, geo, fparams, back_codes[layer], x, dy, need_dx[layer],
                                           bufs, slots, wide, wide_slots, ints, int_slots)
                    else:
                        _spatial_backward(layer, kind, count, geo, fparams, back_codes[layer], x, dy, need_dx[layer],
                                          bufs, slots, wide, wide_slots, ints, int_slots)
            if regularized:
                for layer in range(reg_slots.shape[0]):
                    for r in range(reg_slots.shape[1]):
                        if reg_slots[layer, r] >= 0:
                            l1l2_add_grad(bufs[reg_slots[layer, r]], bufs[reg_grad_slots[layer, r]],
                                          reg_grad_rates[layer, r, 0], reg_grad_rates[layer, r, 1])
            _apply_update(opt_code, flat_value, flat_grad, slot0, slot1, slot2, constants[step], flag, clipvalue, one,
                          clipnorm, clip_bounds, clip_scale)
            _add_totals(totals, values, step, count)
            if not math.isfinite(loss_value):
                return step + 1
        return n_steps

    return njit(train_general_plan_steps)



train_spatial_plan_steps = _general_plan_steps(False)  # models without recurrent or Embedding layers
train_sequence_plan_steps = _general_plan_steps(True)  # models with them (kernels/recurrent_steps.py)


@njit
def _sequence_forward(layer, kind, count, geo, fparams, code, x, bufs, slots, wide, wide_slots, ints, int_slots,
                      uniforms, normals, offsets):
    """_spatial_forward and the recurrent and Embedding kinds."""
    g = geo[layer]
    if kind == KIND_RECURRENT:
        recurrent_forward(count, g[G_A:], x, bufs)
    elif kind == KIND_EMBEDDING:
        embedding_step_forward(x, bufs[slots[layer, S_W0]], bufs[slots[layer, S_Y]], g[G_A])
    else:
        _spatial_forward(layer, kind, count, geo, fparams, code, x, bufs, slots, wide, wide_slots, ints, int_slots,
                         uniforms, normals, offsets)


@njit
def _sequence_backward(layer, kind, count, geo, fparams, code, x, dy, need_dx, bufs, slots, wide, wide_slots,
                       ints, int_slots):
    """_spatial_backward and the recurrent and Embedding kinds."""
    g = geo[layer]
    if kind == KIND_RECURRENT:
        recurrent_backward(count, g[G_A:], dy, need_dx, bufs)
    elif kind == KIND_EMBEDDING:  # indices get no gradient: dx stays the layer's zeros
        embedding_step_backward(x, dy, bufs[slots[layer, S_W0_GRAD]], g[G_A])
    else:
        _spatial_backward(layer, kind, count, geo, fparams, code, x, dy, need_dx, bufs, slots, wide, wide_slots,
                          ints, int_slots)
