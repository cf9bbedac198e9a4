"""Convolution kernels: im2col / col2im for the matrix-product convolutions, and direct
kernels for the depthwise convolution.

Every image is channels_last `[n, height, width, channels]` (a 1-D signal is `[n, 1, width,
channels]`; channels_first layers transpose into a buffer first, as TF.js does). The
geometry is explicit: strides (sh, sw), dilations (dh, dw) and the padding before the first
row / column (pad_top, pad_left) — TF.js 'same' puts the odd pixel after, so callers pass
pad_total // 2. Output sizes come from the output arrays' shapes; positions that fall in
the padding read as 0 and receive no gradient.

A column matrix row is one output position `(n, oh, ow)`; its entries are ordered
`(i, j, c)` — the order of a TF.js kernel `[kh, kw, in_channels, filters]` reshaped to
`[kh * kw * in_channels, filters]`, so `cols @ kernel2d` is the NHWC output directly.
Kernels never allocate and accumulate in a fixed order.
"""

from __future__ import annotations

from trainctl.kernels.jit import njit


@njit
def im2col(x, kh, kw, sh, sw, dh, dw, pad_top, pad_left, out_h, out_w, cols):
    """x [n, h, w, c] → cols [n * out_h * out_w, kh * kw * c] (overwritten)."""
    n, height, width, channels = x.shape
    zero = x.dtype.type(0)
    for b in range(n):
        for oh in range(out_h):
            h0 = oh * sh - pad_top
            for ow in range(out_w):
                row = (b * out_h + oh) * out_w + ow
                w0 = ow * sw - pad_left
                col = 0
                for i in range(kh):
                    h = h0 + i * dh
                    if h < 0 or h >= height:
                        for t in range(kw * channels):
                            cols[row, col + t] = zero
                        col += kw * channels
                        continue
                    for j in range(kw):
                        w = w0 + j * dw
                        if w < 0 or w >= width:
                            for c in range(channels):
                                cols[row, col + c] = zero
                        else:
                            for c in range(channels):
                                cols[row, col + c] = x[b, h, w, c]
                        col += channels


@njit
def col2im(dcols, kh, kw, sh, sw, dh, dw, pad_top, pad_left, out_h, out_w, dx):
    """The adjoint of im2col: dx [n, h, w, c] = sum of dcols [n * out_h * out_w, kh * kw * c]
    entries over every window that read each pixel (dx is overwritten)."""
    n, height, width, channels = dx.shape
    dx[...] = 0
    for b in range(n):
        for oh in range(out_h):
            h0 = oh * sh - pad_top
            for ow in range(out_w):
                row = (b * out_h + oh) * out_w + ow
                w0 = ow * sw - pad_left
                for i in range(kh):
                    h = h0 + i * dh
                    if h < 0 or h >= height:
                        continue
                    for j in range(kw):
                        w = w0 + j * dw
                        if w < 0 or w >= width:
                            continue
                        col = (i * kw + j) * channels
                        for c in range(channels):
                            dx[b, h, w, c] += dcols[row, col + c]


@njit
def depthwise_forward(x, kernel, sh, sw, dh, dw, pad_top, pad_left, z):
    """z[n, oh, ow, c * m + k] = sum_ij x[n, oh*sh + i*dh - pt, ow*sw + j*dw - pl, c] kernel[i, j, c, k].
    x [n, h, w, c], kernel [kh, kw, c, m], z [n, oh, ow, c * m] (overwritten)."""
    n, height, width, channels = x.shape
    kh, kw, _, mult = kernel.shape
    out_h, out_w = z.shape[1], z.shape[2]
    z[...] = 0
    for b in range(n):
        for oh in range(out_h):
            for ow in range(out_w):
                for i in range(kh):
                    h = oh * sh - pad_top + i * dh
                    if h < 0 or h >= height:
                        continue
                    for j in range(kw):
                        w = ow * sw - pad_left + j * dw
                        if w < 0 or w >= width:
                            continue
                        for c in range(channels):
                            v = x[b, h, w, c]
                            for k in range(mult):
                                z[b, oh, ow, c * mult + k] += v * kernel[i, j, c, k]


@njit
def depthwise_backward(x, kernel, dz, sh, sw, dh, dw, pad_top, pad_left, dkernel, dx, need_dx):
    """Gradients of depthwise_forward: dkernel [kh, kw, c, m] and (when need_dx) dx [n, h, w, c],
    both overwritten, from dz [n, oh, ow, c * m]."""
    n, height, width, channels = x.shape
    kh, kw, _, mult = kernel.shape
    out_h, out_w = dz.shape[1], dz.shape[2]
    dkernel[...] = 0
    if need_dx:
        dx[...] = 0
    for b in range(n):
        for oh in range(out_h):
            for ow in range(out_w):
                for i in range(kh):
                    h = oh * sh - pad_top + i * dh
                    if h < 0 or h >= height:
                        continue
                    for j in range(kw):
                        w = ow * sw - pad_left + j * dw
                        if w < 0 or w >= width:
                            continue
                        for c in range(channels):
                            v = x[b, h, w, c]
                            acc = 0.0
                            for k in range(mult):
                                g = dz[b, oh, ow, c * mult + k]
                                dkernel[i, j, c, k] += v * g
                                acc += g * kernel[i, j, c, k]
                            if need_dx:
                                dx[b, h, w, c] += acc
