"""The general plan's kinds for the rest of the layer zoo (kernels/plan_layers.py dispatches to
them): DepthwiseConv2D and SeparableConv2D (KIND_DEPTHWISE), Conv2DTranspose
(KIND_CONV_TRANSPOSE) and the index copies (KIND_INDEX_COPY: Permute, RepeatVector and the
channels_first transposes around a conv or pooling layer). Each runs the kernels the layer's
Python path calls, in the same order (kernels/conv.py, activations.py, blas.matmul),
so the two paths agree bit for bit.

Geometry rows (geo[layer, G_A:]) as compiled_plans.py lays them out:
- KIND_DEPTHWISE: h, w, c, out_channels, kh, kw, sh, sw, dh, dw, pad_top, pad_left, out_h,
  out_w, depth multiplier, separable (1: a pointwise product follows the depthwise step);
- KIND_CONV_TRANSPOSE: in_h, in_w, in_channels, filters, then the 8 numbers of the
  convolution it transposes (kh, kw, sh, sw, dh, dw, pad_top, pad_left), out_h, out_w;
- KIND_INDEX_COPY: out dims d0..d3 (per sample, row-major, padded with 1 in front) and the
  input offset stride of each (0 along a repeated axis: RepeatVector);
- KIND_MASKING: positions per sample (every axis but the last), values per position;
  fparams[0] the mask value rounded to the model's dtype (numpy compares in it).
"""

from __future__ import annotations

from trainctl.jit import njit
from trainctl.kernels.activations import activation_backward_bias_grad, bias_activation_forward
from trainctl.kernels.conv import col2im, depthwise_backward, depthwise_forward, im2col
from trainctl.kernels.plan_layout import S_AUX, S_DX, S_DZ, S_W0, S_W0_GRAD, S_W1, S_W1_GRAD, S_Y, S_Z
from trainctl.kernels.blas import matmul

KIND_DEPTHWISE, KIND_CONV_TRANSPOSE, KIND_INDEX_COPY, KIND_MASKING = 16, 17, 18, 19
INDEX_AXES = 4  # axes per sample an index copy handles


@njit(inline="always")
def _index_walk(src, count, in_size, dims, strides, dst, backward):
    """The one loop nest of the index copies, over the output [count, d0, d1, d2, d3] in
    row-major order and the input offset Σ i_k · strides[k] of each value: forward reads src at
    the offset into dst in order; backward reads src in order into dst at the offset, the first
    value assigned and the rest added (only along a repeated axis, stride 0: a permutation
    copies; RepeatVector's sum over its repeats runs in order from the first, as its Python
    backward adds them). Inlined with `backward` a constant, as conv._depthwise_taps."""
    d0, d1, d2, d3 = dims[0], dims[1], dims[2], dims[3]
    s0, s1, s2, s3 = strides[0], strides[1], strides[2], strides[3]
    r0, r1, r2, r3 = s0 == 0 and d0 > 1, s1 == 0 and d1 > 1, s2 == 0 and d2 > 1, s3 == 0 and d3 > 1
    at = 0
    for b in range(count):
        base = b * in_size
        for i0 in range(d0):
            for i1 in range(d1):
                for i2 in range(d2):
                    row = base + i0 * s0 + i1 * s1 + i2 * s2
                    later = (r0 and i0 > 0) or (r1 and i1 > 0) or (r2 and i2 > 0)
                    for i3 in range(d3):
                        if not backward:
                            dst[at] = src[row + i3 * s3]
                        elif later or (r3 and i3 > 0):
                            dst[row + i3 * s3] += src[at]
                        else:
                            dst[row + i3 * s3] = src[at]
                        at += 1


@njit
def index_copy_forward(x, count, in_size, dims, strides, y):
    """y [count, d0, d1, d2, d3] (flat, row-major) = x [count, in_size] (flat) read at
    Σ i_k · strides[k] within each sample: a permutation of axes, or a repeat (stride 0)."""
    _index_walk(x, count, in_size, dims, strides, y, False)


@njit
def index_copy_backward(dy, count, in_size, dims, strides, dx):
    """The transpose of index_copy_forward (see _index_walk)."""
    _index_walk(dy, count, in_size, dims, strides, dx, True)


@njit
def masking_forward(x, count, positions, width, mask_value, keep, y):
    """Masking.compute_mask then forward: keep[p] = 1.0 where some of position p's width values
    (its last axis) differs from mask_value, else 0.0; y = x * keep per position."""
    for at in range(count * positions):
        kept = False
        for j in range(width):
            if x[at * width + j] != mask_value:
                kept = True
                break
        keep[at] = 1.0 if kept else 0.0
        for j in range(width):
            y[at * width + j] = x[at * width + j] * keep[at]


@njit
def masking_backward(dy, count, positions, width, keep, dx):
    """Masking.backward: dx = dy * keep per position."""
    for at in range(count * positions):
        for j in range(width):
            dx[at * width + j] = dy[at * width + j] * keep[at]


@njit
def zoo_forward(kind, count, g, fp, code, x, bufs, sl):
    """The forward of the kinds above, as the layers' forward calls their kernels; g is the
    layer's geometry from G_A on, sl its buffer slots (plan_layers.S_*)."""
    y = bufs[sl[S_Y]]
    z = bufs[sl[S_Z]]
    if kind == KIND_DEPTHWISE:  # _DepthwiseStep._depthwise_forward, then _ConvBase._epilogue_forward
        h, w, c, out_c, kh, kw = g[0], g[1], g[2], g[3], g[4], g[5]
        out_h, out_w, mult = g[12], g[13], g[14]
        rows = count * out_h * out_w
        x4 = x.reshape(count, h, w, c)
        kernel = bufs[sl[S_W0]].reshape(kh, kw, c, mult)
        if g[15]:  # SeparableConv2D: the depthwise step into mid, then mid @ pointwise
            mid = bufs[sl[S_AUX + 2]][:rows * c * mult].reshape(rows, c * mult)
            depthwise_forward(x4, kernel, g[6], g[7], g[8], g[9], g[10], g[11], mid.reshape(count, out_h, out_w, c * mult))
            matmul(mid, bufs[sl[S_AUX]].reshape(c * mult, out_c), z[:rows * out_c].reshape(rows, out_c), False, False)
        else:
            depthwise_forward(x4, kernel, g[6], g[7], g[8], g[9], g[10], g[11],
                              z[:rows * out_c].reshape(count, out_h, out_w, out_c))
        bias_activation_forward(z[:rows * out_c].reshape(rows, out_c), bufs[sl[S_W1]], y[:rows * out_c].reshape(rows, out_c),
                                code)
    elif kind == KIND_CONV_TRANSPOSE:  # Conv2DTranspose.forward
        in_h, in_w, in_c, filters = g[0], g[1], g[2], g[3]
        out_h, out_w = g[12], g[13]
        in_rows, rows = count * in_h * in_w, count * out_h * out_w
        depth = g[4] * g[5] * filters
        cols = bufs[sl[S_AUX]][:in_rows * depth].reshape(in_rows, depth)
        matmul(x.reshape(in_rows, in_c), bufs[sl[S_W0]].reshape(depth, in_c), cols, False, True)
        col2im(cols, g[4], g[5], g[6], g[7], g[8], g[9], g[10], g[11], in_h, in_w,
               z[:rows * filters].reshape(count, out_h, out_w, filters))
        bias_activation_forward(z[:rows * filters].reshape(rows, filters), bufs[sl[S_W1]],
                                y[:rows * filters].reshape(rows, filters), code)
    elif kind == KIND_INDEX_COPY:  # Permute / RepeatVector forward, a channels_first layer's transposes
        index_copy_forward(x, count, x.shape[0] // count, g[:INDEX_AXES], g[INDEX_AXES:2 * INDEX_AXES], y)
    elif kind == KIND_MASKING:
        masking_forward(x, count, g[0], g[1], fp[0], bufs[sl[S_AUX]], y)


@njit
def zoo_backward(kind, count, g, code, x, dy, need_dx, bufs, sl):
    """The backward of the kinds above (weights' grads whatever need_dx, dx when need_dx)."""
    dx = bufs[sl[S_DX]]
    z, dz = bufs[sl[S_Z]], bufs[sl[S_DZ]]
    if kind == KIND_DEPTHWISE:  # _ConvBase._epilogue_backward, then the pointwise and depthwise grads
        h, w, c, out_c, kh, kw = g[0], g[1], g[2], g[3], g[4], g[5]
        out_h, out_w, mult = g[12], g[13], g[14]
        rows = count * out_h * out_w
        dz2 = dz[:rows * out_c].reshape(rows, out_c)
        activation_backward_bias_grad(z[:rows * out_c].reshape(rows, out_c), bufs[sl[S_Y]][:rows * out_c].reshape(rows, out_c),
                                      dy.reshape(rows, out_c), dz2, bufs[sl[S_W1_GRAD]], code)
        d4 = dz2.reshape(count, out_h, out_w, out_c)
        if g[15]:  # SeparableConv2D._backward: mid.T @ dz, dz @ pointwise.T
            mid_c = c * mult
            pointwise = bufs[sl[S_AUX]].reshape(mid_c, out_c)
            matmul(bufs[sl[S_AUX + 2]][:rows * mid_c].reshape(rows, mid_c), dz2, bufs[sl[S_AUX + 1]].reshape(mid_c, out_c), True, False)
            dmid = bufs[sl[S_AUX + 3]][:rows * mid_c].reshape(rows, mid_c)
            matmul(dz2, pointwise, dmid, False, True)
            d4 = dmid.reshape(count, out_h, out_w, mid_c)
        depthwise_backward(x.reshape(count, h, w, c), bufs[sl[S_W0]].reshape(kh, kw, c, mult), d4, g[6], g[7], g[8],
                           g[9], g[10], g[11], bufs[sl[S_W0_GRAD]].reshape(kh, kw, c, mult),
                           dx[:count * h * w * c].reshape(count, h, w, c), need_dx)
    elif kind == KIND_CONV_TRANSPOSE:  # Conv2DTranspose._backward
        in_h, in_w, in_c, filters = g[0], g[1], g[2], g[3]
        out_h, out_w = g[12], g[13]
        in_rows, rows = count * in_h * in_w, count * out_h * out_w
        depth = g[4] * g[5] * filters
        dz2 = dz[:rows * filters].reshape(rows, filters)
        activation_backward_bias_grad(z[:rows * filters].reshape(rows, filters),
                                      bufs[sl[S_Y]][:rows * filters].reshape(rows, filters),
                                      dy.reshape(rows, filters), dz2, bufs[sl[S_W1_GRAD]], code)
        cols = bufs[sl[S_AUX]][:in_rows * depth].reshape(in_rows, depth)
        im2col(dz2.reshape(count, out_h, out_w, filters), g[4], g[5], g[6], g[7], g[8], g[9], g[10], g[11], in_h, in_w,
               cols)
        x2 = x.reshape(in_rows, in_c)
        matmul(cols, x2, bufs[sl[S_W0_GRAD]].reshape(depth, in_c), True, False)
        if need_dx:
            matmul(cols, bufs[sl[S_W0]].reshape(depth, in_c), dx[:in_rows * in_c].reshape(in_rows, in_c), False, False)
    elif kind == KIND_INDEX_COPY:
        if need_dx:
            index_copy_backward(dy, count, x.shape[0] // count, g[:INDEX_AXES], g[INDEX_AXES:2 * INDEX_AXES], dx)
    elif kind == KIND_MASKING:
        if need_dx:
            masking_backward(dy, count, g[0], g[1], bufs[sl[S_AUX]], dx)
