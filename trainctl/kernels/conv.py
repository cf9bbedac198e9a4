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
Kernels never allocate and accumulate in a fixed order. Hot loops index flat views with
unsigned indices (`_u`); every index is computed in range first.
"""

from __future__ import annotations

import numpy as np

from trainctl.jit import njit


@njit(inline="always")
def _u(i):
    """An index known to be in range, as unsigned: numba then skips the negative-index
    wraparound test, which otherwise stops LLVM from vectorising the copy loops (4x)."""
    return np.uint64(i)


@njit
def im2col(x, kh, kw, sh, sw, dh, dw, pad_top, pad_left, out_h, out_w, cols):
    """x [n, h, w, c] → cols [n * out_h * out_w, kh * kw * c] (overwritten).

    Where a window row lies inside the image and dw == 1, its kw * c entries are one
    contiguous run of x (channels_last), copied as such; the rest goes pixel by pixel."""
    n, height, width, channels = x.shape
    xf, cf = x.reshape(-1), cols.reshape(-1)
    run = kw * channels
    depth = kh * run
    for b in range(n):
        for oh in range(out_h):
            for ow in range(out_w):
                row = (b * out_h + oh) * out_w + ow
                w0 = ow * sw - pad_left
                w_inside = dw == 1 and w0 >= 0 and w0 + kw <= width
                for i in range(kh):
                    h = oh * sh - pad_top + i * dh
                    at = row * depth + i * run
                    if h < 0 or h >= height:
                        for t in range(run):
                            cf[_u(at + t)] = 0.0
                    elif w_inside:
                        src = ((b * height + h) * width + w0) * channels
                        for t in range(run):
                            cf[_u(at + t)] = xf[_u(src + t)]
                    else:
                        for j in range(kw):
                            w = w0 + j * dw
                            if w < 0 or w >= width:
                                for c in range(channels):
                                    cf[_u(at + c)] = 0.0
                            else:
                                src = ((b * height + h) * width + w) * channels
                                for c in range(channels):
                                    cf[_u(at + c)] = xf[_u(src + c)]
                            at += channels


@njit
def col2im(dcols, kh, kw, sh, sw, dh, dw, pad_top, pad_left, out_h, out_w, dx):
    """The adjoint of im2col: dx [n, h, w, c] = sum of dcols [n * out_h * out_w, kh * kw * c]
    entries over every window that read each pixel (dx is overwritten)."""
    n, height, width, channels = dx.shape
    dxf, df = dx.reshape(-1), dcols.reshape(-1)
    dxf[:] = 0.0
    run = kw * channels
    depth = kh * run
    for b in range(n):
        for oh in range(out_h):
            for ow in range(out_w):
                row = (b * out_h + oh) * out_w + ow
                w0 = ow * sw - pad_left
                w_inside = dw == 1 and w0 >= 0 and w0 + kw <= width
                for i in range(kh):
                    h = oh * sh - pad_top + i * dh
                    if h < 0 or h >= height:
                        continue
                    at = row * depth + i * run
                    if w_inside:
                        dst = ((b * height + h) * width + w0) * channels
                        for t in range(run):
                            dxf[_u(dst + t)] += df[_u(at + t)]
                    else:
                        for j in range(kw):
                            w = w0 + j * dw
                            if w >= 0 and w < width:
                                dst = ((b * height + h) * width + w) * channels
                                for c in range(channels):
                                    dxf[_u(dst + c)] += df[_u(at + c)]
                            at += channels


@njit(inline="always")
def _depthwise_taps(x, kernel, sh, sw, dh, dw, pad_top, pad_left, z, dz, dkernel, dx, backward, need_dx):
    """The one loop nest of the depthwise convolution, over every (output pixel, kernel tap,
    channel) whose input pixel lies inside the image: forward adds into z, backward into
    dkernel and (when need_dx) dx. Inlined into each caller with `backward` a constant, so
    each gets its own branch-free loop (measured no slower than two written-out nests)."""
    n, height, width, channels = x.shape
    kh, kw, _, mult = kernel.shape
    out_h, out_w = z.shape[1], z.shape[2]
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
                            if backward:
                                acc = 0.0
                                for k in range(mult):
                                    g = dz[b, oh, ow, c * mult + k]
                                    dkernel[i, j, c, k] += v * g
                                    acc += g * kernel[i, j, c, k]
                                if need_dx:
                                    dx[b, h, w, c] += acc
                            else:
                                for k in range(mult):
                                    z[b, oh, ow, c * mult + k] += v * kernel[i, j, c, k]


@njit
def depthwise_forward(x, kernel, sh, sw, dh, dw, pad_top, pad_left, z):
    """z[n, oh, ow, c * m + k] = sum_ij x[n, oh*sh + i*dh - pt, ow*sw + j*dw - pl, c] kernel[i, j, c, k].
    x [n, h, w, c], kernel [kh, kw, c, m], z [n, oh, ow, c * m] (overwritten)."""
    z[...] = 0
    _depthwise_taps(x, kernel, sh, sw, dh, dw, pad_top, pad_left, z, z, kernel, x, False, False)


@njit
def depthwise_backward(x, kernel, dz, sh, sw, dh, dw, pad_top, pad_left, dkernel, dx, need_dx):
    """Gradients of depthwise_forward: dkernel [kh, kw, c, m] and (when need_dx) dx [n, h, w, c],
    both overwritten, from dz [n, oh, ow, c * m]."""
    dkernel[...] = 0
    if need_dx:
        dx[...] = 0
    _depthwise_taps(x, kernel, sh, sw, dh, dw, pad_top, pad_left, dz, dz, dkernel, dx, True, need_dx)


# -- the transposed column matrix, for few input channels --------------------------------
# With one input channel (a grey image) a cols row holds only kh * kw values and im2col
# copies runs of kw; the transposed matrix colsT [kh * kw * c, n * out_h * out_w] instead
# copies, for each kernel tap, runs of out_w consecutive pixels (stride 1), which is what
# the memory system likes. The products become colsT.T @ kernel2d and colsT @ dz.
@njit
def _inside_columns(out_w, sw, offset, width):
    """The ow range [lo, hi) whose pixel w = ow * sw + offset is inside the image."""
    ow_lo = 0
    while ow_lo < out_w and ow_lo * sw + offset < 0:
        ow_lo += 1
    ow_hi = out_w
    while ow_hi > ow_lo and (ow_hi - 1) * sw + offset >= width:
        ow_hi -= 1
    return ow_lo, ow_hi


@njit
def im2col_t(x, kh, kw, sh, sw, dh, dw, pad_top, pad_left, out_h, out_w, cols_t):
    """x [n, h, w, c] → cols_t [kh * kw * c, n * out_h * out_w] (overwritten)."""
    n, height, width, channels = x.shape
    xf, cf = x.reshape(-1), cols_t.reshape(-1)
    rows = cols_t.shape[1]
    for i in range(kh):
        for j in range(kw):
            offset = j * dw - pad_left
            ow_lo, ow_hi = _inside_columns(out_w, sw, offset, width)
            for c in range(channels):
                tap = (i * kw + j) * channels + c
                for b in range(n):
                    for oh in range(out_h):
                        h = oh * sh - pad_top + i * dh
                        start = (b * out_h + oh) * out_w
                        if h < 0 or h >= height:
                            for ow in range(out_w):
                                cols_t[tap, start + ow] = 0.0
                            continue
                        at = tap * rows + start
                        for ow in range(ow_lo):
                            cf[_u(at + ow)] = 0.0
                        src = ((b * height + h) * width + offset) * channels + c
                        step = sw * channels
                        if step == 1:
                            for ow in range(ow_lo, ow_hi):
                                cf[_u(at + ow)] = xf[_u(src + ow)]
                        else:
                            for ow in range(ow_lo, ow_hi):
                                cf[_u(at + ow)] = xf[_u(src + ow * step)]
                        for ow in range(ow_hi, out_w):
                            cf[_u(at + ow)] = 0.0


@njit
def col2im_t(dcols_t, kh, kw, sh, sw, dh, dw, pad_top, pad_left, out_h, out_w, dx):
    """The adjoint of im2col_t: dx [n, h, w, c] (overwritten) from dcols_t [kh * kw * c, rows]."""
    n, height, width, channels = dx.shape
    dxf, df = dx.reshape(-1), dcols_t.reshape(-1)
    rows = dcols_t.shape[1]
    dxf[:] = 0.0
    for i in range(kh):
        for j in range(kw):
            offset = j * dw - pad_left
            ow_lo, ow_hi = _inside_columns(out_w, sw, offset, width)
            for c in range(channels):
                tap = (i * kw + j) * channels + c
                for b in range(n):
                    for oh in range(out_h):
                        h = oh * sh - pad_top + i * dh
                        if h < 0 or h >= height:
                            continue
                        start = (b * out_h + oh) * out_w
                        dst = ((b * height + h) * width + offset) * channels + c
                        step = sw * channels
                        at = tap * rows + start
                        for ow in range(ow_lo, ow_hi):
                            dxf[_u(dst + ow * step)] += df[_u(at + ow)]
