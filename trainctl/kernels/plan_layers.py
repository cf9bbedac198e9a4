"""One layer's forward and backward in the general plan of the compiled loop (see
kernels/general_plan_steps.py): the plan's layout (kinds, buffer slots, geometry columns) and the
dispatch by kind to the kernels each layer's Python path calls (conv_steps, pooling,
normalization, advanced_activations, resampling, noise, recurrent_steps, bidirectional_steps,
plan_zoo), so the two paths run the same kernels in the same order.
"""

from __future__ import annotations

from trainctl.jit import njit
from trainctl.kernels.activations import activation_backward, activation_forward
from trainctl.kernels.advanced_activations import (
    elementwise_backward,
    elementwise_forward,
    prelu_backward,
    prelu_forward,
    softmax_backward,
    softmax_forward,
)
from trainctl.kernels.bidirectional_steps import BI_DRAWS, bidirectional_dx, bidirectional_merge, bidirectional_split
from trainctl.kernels.conv_steps import conv_backward, conv_forward
from trainctl.kernels.layers import dropout_forward
from trainctl.kernels.noise import (
    NOISE_SPATIAL_DROPOUT,
    multiply,
    noise_backward,
    noise_forward,
)
from trainctl.kernels.normalization import (
    batch_norm_backward,
    batch_norm_forward,
    layer_norm_backward,
    layer_norm_forward,
)
from trainctl.kernels.optimizers import l1l2_penalty
from trainctl.kernels.plan_layout import (  # noqa: F401 (the layout's names, for compiled_plans.py)
    G_A,
    G_IN,
    G_OUT,
    G_TIMES,
    N_FPARAMS,
    N_GEO,
    N_SLOTS,
    S_AUX,
    S_DX,
    S_DZ,
    S_W0,
    S_W0_GRAD,
    S_W1,
    S_W1_GRAD,
    S_Y,
    S_Z,
)
from trainctl.kernels.plan_steps import KIND_DENSE, KIND_DROPOUT
from trainctl.kernels.plan_zoo import (  # noqa: F401 (the kinds, for compiled_plans.py)
    KIND_CONV_TRANSPOSE,
    KIND_DEPTHWISE,
    KIND_INDEX_COPY,
    KIND_MASKING,
    zoo_backward,
    zoo_forward,
)
from trainctl.kernels.pooling import (
    avg_pool_backward,
    avg_pool_forward,
    global_pool_backward,
    global_pool_forward,
    max_pool_backward,
    max_pool_forward,
)
from trainctl.kernels.recurrent_steps import (
    N_R,
    embedding_mask,
    embedding_step_backward,
    embedding_step_forward,
    recurrent_backward,
    recurrent_forward,
)
from trainctl.kernels.resampling import (
    copy_box,
    upsample_bilinear_backward,
    upsample_bilinear_forward,
    upsample_nearest_backward,
    upsample_nearest_forward,
)
from trainctl.kernels.steps import (
    dense_backward,
    dense_forward,
)

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
KIND_RECURRENT, KIND_EMBEDDING = 20, 21  # kernels/recurrent_steps.py: geo[G_A:] its R_* row / output_dim, mask_zero
KIND_BIDIRECTIONAL = 22  # kernels/bidirectional_steps.py: geo[G_A:] its copies' two R_* rows, mode, draws
KIND_ELEMENTWISE, KIND_SOFTMAX, KIND_LAYER_NORM, KIND_PRELU, KIND_UPSAMPLE, KIND_COPY_BOX, KIND_NOISE = \
    9, 10, 11, 12, 13, 14, 15
# N_FPARAMS, the S_* slots and the G_* columns: kernels/plan_layout.py



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
    elif kind >= KIND_DEPTHWISE:  # kernels/plan_zoo.py
        zoo_forward(kind, count, g[G_A:], fparams[layer], code, x, bufs, sl)
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
    elif kind == KIND_UPSAMPLE:  # _UpSampling.forward (channels_last)
        h, w, c, sr, sc = g[G_A], g[G_A + 1], g[G_A + 2], g[G_A + 3], g[G_A + 4]
        if g[G_A + 5]:  # bilinear, on the layer's tables (int ones end to end)
            t, rows, cols = ints[int_slots[layer]], h * sr, w * sc
            upsample_bilinear_forward(x.reshape(count, h, w, c), t[:rows], t[rows:2 * rows], bufs[sl[S_AUX]],
                                      t[2 * rows:2 * rows + cols], t[2 * rows + cols:], bufs[sl[S_AUX + 1]],
                                      y.reshape(count, rows, cols, c))
        else:
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
        if g[G_A + 5]:
            t, rows, cols = ints[int_slots[layer]], h * sr, w * sc
            upsample_bilinear_backward(dy.reshape(count, rows, cols, c), t[:rows], t[rows:2 * rows], bufs[sl[S_AUX]],
                                       t[2 * rows:2 * rows + cols], t[2 * rows + cols:], bufs[sl[S_AUX + 1]],
                                       dx.reshape(count, h, w, c))
        else:
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
    elif kind >= KIND_DEPTHWISE:  # kernels/plan_zoo.py
        zoo_backward(kind, count, g[G_A:], code, x, dy, need_dx, bufs, sl)
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
    """Model.activity_loss(count): per layer with an activity regularizer penalty(y) / its
    samples, summed over layers (float64). A row's samples are count * G_TIMES: a layer inside
    a TimeDistributed divides by the n * steps samples it saw (TimeDistributed.activity_loss)."""
    total = 0.0
    for layer in range(act_slots.shape[0]):
        if act_slots[layer] >= 0:
            samples = count * geo[layer, G_TIMES]
            y = bufs[slots[layer, S_Y]][:samples * geo[layer, G_OUT]]
            total += l1l2_penalty(y, act_rates[layer, 0], act_rates[layer, 1]) / samples
    return total


@njit
def _sequence_forward(layer, kind, count, geo, fparams, code, x, bufs, slots, wide, wide_slots, ints, int_slots,
                      uniforms, normals, offsets):
    """_spatial_forward and the recurrent and Embedding kinds."""
    g = geo[layer]
    if kind == KIND_RECURRENT:
        offsets[layer] = recurrent_forward(count, g[G_A:], x, bufs, fparams[layer], uniforms[layer], offsets[layer])
    elif kind == KIND_BIDIRECTIONAL:  # Bidirectional.forward: each copy on x, from its own draws, then merged
        offsets[layer] = recurrent_forward(count, g[G_A:], x, bufs, fparams[layer], uniforms[layer], offsets[layer])
        back = g[G_A + BI_DRAWS]
        offsets[back] = recurrent_forward(count, g[G_A + N_R:], x, bufs, fparams[layer], uniforms[back], offsets[back])
        bidirectional_merge(count, g[G_A:], bufs, slots[layer])
    elif kind == KIND_EMBEDDING:
        embedding_step_forward(x, bufs[slots[layer, S_W0]], bufs[slots[layer, S_Y]], g[G_A])
        if g[G_A + 1] == 1:  # mask_zero: Embedding.compute_mask as 1.0 / 0.0, for the recurrent layers
            embedding_mask(x, bufs[slots[layer, S_AUX]])
    else:
        _spatial_forward(layer, kind, count, geo, fparams, code, x, bufs, slots, wide, wide_slots, ints, int_slots,
                         uniforms, normals, offsets)


@njit
def _sequence_backward(layer, kind, count, geo, fparams, code, x, dy, need_dx, bufs, slots, wide, wide_slots,
                       ints, int_slots):
    """_spatial_backward and the recurrent and Embedding kinds."""
    g = geo[layer]
    if kind == KIND_RECURRENT:
        recurrent_backward(count, g[G_A:], dy, need_dx, bufs, fparams[layer])
    elif kind == KIND_BIDIRECTIONAL:  # Bidirectional.backward: dy split, the forward copy, the backward, dx summed
        sl = slots[layer]
        size = bidirectional_split(count, g[G_A:], dy, bufs, sl)
        recurrent_backward(count, g[G_A:], bufs[sl[S_AUX]][:size], need_dx, bufs, fparams[layer])
        recurrent_backward(count, g[G_A + N_R:], bufs[sl[S_AUX + 1]][:size], need_dx, bufs, fparams[layer])
        if need_dx:
            bidirectional_dx(count, g[G_A:], bufs, sl)
    elif kind == KIND_EMBEDDING:  # indices get no gradient: dx stays the layer's zeros
        embedding_step_backward(x, dy, bufs[slots[layer, S_W0_GRAD]], g[G_A])
    else:
        _spatial_backward(layer, kind, count, geo, fparams, code, x, dy, need_dx, bufs, slots, wide, wide_slots,
                          ints, int_slots)
