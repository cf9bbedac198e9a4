"""Conv1D / Conv2D forward and backward in one compiled call each: the column matrix built a
chunk of samples at a time (kernels/conv.py), the BLAS products (`np.dot`), the fused bias +
activation epilogue (kernels/activations.py). The layers (nn/layers/conv.py) and the
compiled training loop (kernels/plan_steps.py) both call these, so the two paths run the
same instructions (as kernels/steps.py does for Dense).

Geometry as kernels/conv.py takes it: (kh, kw, sh, sw, dh, dw, pad_top, pad_left) of the
channels_last 4-D view, out_h, out_w. `mode`: how the column matrix is laid out —
MODE_POINTWISE (1x1, stride 1, no padding: the input is its own column matrix),
MODE_ROWS (cols [rows, depth]) or MODE_TRANSPOSED (cols_t [depth, rows], for one input
channel). `cols` / `dcols` are flat scratch of `chunk * out_h * out_w * depth` values.
"""

from __future__ import annotations

import numpy as np

from trainctl.kernels.activations import activation_backward_bias_grad, bias_activation_forward
from trainctl.kernels.conv import col2im, col2im_t, im2col, im2col_t
from trainctl.jit import njit

MODE_POINTWISE, MODE_ROWS, MODE_TRANSPOSED = 0, 1, 2


@njit
def _build_columns(x4, s0, s1, kh, kw, sh, sw, dh, dw, pad_top, pad_left, out_h, out_w, mode, depth, cols):
    """The column matrix of samples s0:s1 into the flat `cols` (layout by `mode`)."""
    rows = (s1 - s0) * out_h * out_w
    if mode == MODE_TRANSPOSED:
        im2col_t(x4[s0:s1], kh, kw, sh, sw, dh, dw, pad_top, pad_left, out_h, out_w,
                 cols[:rows * depth].reshape(depth, rows))
    else:
        im2col(x4[s0:s1], kh, kw, sh, sw, dh, dw, pad_top, pad_left, out_h, out_w,
               cols[:rows * depth].reshape(rows, depth))


@njit
def conv_forward(x4, kernel2d, bias, kh, kw, sh, sw, dh, dw, pad_top, pad_left, out_h, out_w,
                 chunk, mode, cols, z, y, code):
    """x4 [n, h, w, c] → z = conv(x4, kernel2d [kh * kw * c, filters]) and y = act(z + bias),
    both [n * out_h * out_w, filters] (the first rows of the buffers). Afterwards `cols`
    holds the last chunk's columns, which conv_backward reuses."""
    n, channels = x4.shape[0], x4.shape[3]
    per = out_h * out_w
    rows = n * per
    depth = kernel2d.shape[0]
    if mode == MODE_POINTWISE:
        np.dot(x4.reshape(rows, channels), kernel2d, z[:rows])
    else:
        for s0 in range(0, n, chunk):
            s1 = min(n, s0 + chunk)
            part = (s1 - s0) * per
            _build_columns(x4, s0, s1, kh, kw, sh, sw, dh, dw, pad_top, pad_left, out_h, out_w, mode, depth, cols)
            if mode == MODE_TRANSPOSED:
                np.dot(cols[:part * depth].reshape(depth, part).T, kernel2d, z[s0 * per:s1 * per])
            else:
                np.dot(cols[:part * depth].reshape(part, depth), kernel2d, z[s0 * per:s1 * per])
    bias_activation_forward(z[:rows], bias, y[:rows], code)


@njit
def conv_backward(x4, kernel2d, z, y, dy, dz, bias_grad, kernel_grad, kernel_part,
                  kh, kw, sh, sw, dh, dw, pad_top, pad_left, out_h, out_w, chunk, mode, cols, dcols,
                  dx4, code, need_dx):
    """From dy [rows, filters] (rows = n * out_h * out_w) after conv_forward of the same x4:
    dz = act'(z) * dy, bias_grad = Σ dz, kernel_grad [depth, filters] = cols.T @ dz summed
    over the chunks (last chunk first: its columns are still built), and when need_dx,
    dx4 [n, h, w, c] = col2im(dz @ kernel2d.T) (overwritten). kernel_part: [depth, filters]
    scratch for the later chunks' products."""
    rows = dy.shape[0]
    activation_backward_bias_grad(z[:rows], y[:rows], dy, dz[:rows], bias_grad, code)
    per = out_h * out_w
    n = rows // per
    depth = kernel2d.shape[0]
    dzr = dz[:rows]
    if mode == MODE_POINTWISE:
        x2d = x4[:n].reshape(rows, x4.shape[3])
        np.dot(x2d.T, dzr, kernel_grad)
        if need_dx:
            np.dot(dzr, kernel2d.T, dx4[:n].reshape(rows, dx4.shape[3]))
        return
    n_chunks = (n + chunk - 1) // chunk
    kg, kp = kernel_grad.reshape(-1), kernel_part.reshape(-1)
    for k in range(n_chunks):
        s0 = (n_chunks - 1 - k) * chunk
        s1 = min(n, s0 + chunk)
        part = (s1 - s0) * per
        if k > 0:
            _build_columns(x4, s0, s1, kh, kw, sh, sw, dh, dw, pad_top, pad_left, out_h, out_w, mode, depth, cols)
        dz_part = dzr[s0 * per:s1 * per]
        if mode == MODE_TRANSPOSED:
            cols_t = cols[:part * depth].reshape(depth, part)
            np.dot(cols_t, dz_part, kernel_grad if k == 0 else kernel_part)
        else:
            cols_r = cols[:part * depth].reshape(part, depth)
            np.dot(cols_r.T, dz_part, kernel_grad if k == 0 else kernel_part)
        if k > 0:
            for i in range(kg.shape[0]):
                kg[i] += kp[i]
        if not need_dx:
            continue
        if mode == MODE_TRANSPOSED:
            dcols_t = dcols[:part * depth].reshape(depth, part)
            np.dot(kernel2d, dz_part.T, dcols_t)
            col2im_t(dcols_t, kh, kw, sh, sw, dh, dw, pad_top, pad_left, out_h, out_w, dx4[s0:s1])
        else:
            dcols_r = dcols[:part * depth].reshape(part, depth)
            np.dot(dz_part, kernel2d.T, dcols_r)
            col2im(dcols_r, kh, kw, sh, sw, dh, dw, pad_top, pad_left, out_h, out_w, dx4[s0:s1])
