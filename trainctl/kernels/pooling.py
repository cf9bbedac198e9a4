"""Pooling kernels (TF.js semantics, tfjs-backend-cpu pool_utils).

Images are channels_last `[n, height, width, channels]` (1-D pooling passes `[n, length, 1,
channels]` with a pool width of 1, exactly as TF.js expands the dims). Windows that overhang
the image ('same' padding, pad_top = pad_total // 2) only see real pixels: max pooling
ignores the padding, average pooling divides by the number of real pixels in the window.

Max pooling records, per output, the flat index (into x.reshape(-1)) of the first maximum
of its window — the position TF.js's maxPoolPositions gives — and backward routes the
gradient there. Global max pooling follows tfjs-core's max gradient instead: every element
equal to the maximum receives dy.
"""

from __future__ import annotations


import numpy as np

from trainctl.jit import njit


@njit(inline="always")
def _u(i):
    """An in-range index as unsigned: no negative-index wraparound test in the hot loops."""
    return np.uint64(i)


@njit(inline="always")
def _window(o, stride, pad, size, extent):
    """The input range [lo, hi) of output position o's window, clipped to the image."""
    return max(o * stride - pad, 0), min(o * stride - pad + size, extent)


@njit
def max_pool_forward(x, ph, pw, sh, sw, pad_top, pad_left, y, argmax):
    """x [n, h, w, c] → y [n, oh, ow, c] and argmax (int64, same shape as y), both overwritten.
    Pixels are visited in row-major order and only a strictly greater value moves the
    maximum, so ties keep the first."""
    n, height, width, channels = x.shape
    out_h, out_w = y.shape[1], y.shape[2]
    xf, yf, af = x.reshape(-1), y.reshape(-1), argmax.reshape(-1)
    for b in range(n):
        for oh in range(out_h):
            h_lo, h_hi = _window(oh, sh, pad_top, ph, height)
            for ow in range(out_w):
                w_lo, w_hi = _window(ow, sw, pad_left, pw, width)
                out = ((b * out_h + oh) * out_w + ow) * channels
                first = ((b * height + h_lo) * width + w_lo) * channels
                for c in range(channels):
                    # scalar locals and a plain compare: LLVM makes it a select, no branch to mispredict
                    where = first + c
                    best = xf[_u(where)]
                    for h in range(h_lo, h_hi):
                        for w in range(w_lo, w_hi):
                            at = ((b * height + h) * width + w) * channels + c
                            v = xf[_u(at)]
                            if v > best:
                                best = v
                                where = at
                    yf[_u(out + c)] = best
                    af[_u(out + c)] = where


@njit
def max_pool_backward(dy, argmax, dx):
    """dx (any shape, overwritten) = dy scattered to the recorded positions (summed where
    windows share a maximum)."""
    flat_dx = dx.reshape(-1)
    flat_dy = dy.reshape(-1)
    flat_arg = argmax.reshape(-1)
    flat_dx[:] = 0
    for k in range(flat_dy.shape[0]):
        flat_dx[_u(flat_arg[k])] += flat_dy[k]


@njit
def avg_pool_forward(x, ph, pw, sh, sw, pad_top, pad_left, y):
    """x [n, h, w, c] → y [n, oh, ow, c] (overwritten): mean over each window's real pixels."""
    n, height, width, channels = x.shape
    out_h, out_w = y.shape[1], y.shape[2]
    for b in range(n):
        for oh in range(out_h):
            h_lo, h_hi = _window(oh, sh, pad_top, ph, height)
            for ow in range(out_w):
                w_lo, w_hi = _window(ow, sw, pad_left, pw, width)
                count = (h_hi - h_lo) * (w_hi - w_lo)
                for c in range(channels):
                    total = 0.0
                    for h in range(h_lo, h_hi):
                        for w in range(w_lo, w_hi):
                            total += x[b, h, w, c]
                    y[b, oh, ow, c] = total / count


@njit
def avg_pool_backward(dy, ph, pw, sh, sw, pad_top, pad_left, dx):
    """dx [n, h, w, c] (overwritten) from dy [n, oh, ow, c]: each window's dy / count spread
    over its real pixels."""
    n, height, width, channels = dx.shape
    out_h, out_w = dy.shape[1], dy.shape[2]
    dx[...] = 0
    for b in range(n):
        for oh in range(out_h):
            h_lo, h_hi = _window(oh, sh, pad_top, ph, height)
            for ow in range(out_w):
                w_lo, w_hi = _window(ow, sw, pad_left, pw, width)
                scale = 1.0 / ((h_hi - h_lo) * (w_hi - w_lo))
                for c in range(channels):
                    g = dy[b, oh, ow, c] * scale
                    for h in range(h_lo, h_hi):
                        for w in range(w_lo, w_hi):
                            dx[b, h, w, c] += g


@njit
def global_pool_forward(x, y, is_max):
    """x [n, positions, c] → y [n, c] (overwritten): the max (is_max) or the mean over positions."""
    n, positions, channels = x.shape
    for b in range(n):
        for c in range(channels):
            y[b, c] = x[b, 0, c]
        for p in range(1, positions):
            for c in range(channels):
                v = x[b, p, c]
                if is_max:
                    if v > y[b, c]:
                        y[b, c] = v
                else:
                    y[b, c] += v
        if not is_max:
            for c in range(channels):
                y[b, c] = y[b, c] / positions


@njit
def global_pool_backward(x, y, dy, dx, is_max):
    """dx [n, positions, c] (overwritten) from dy [n, c]: the mean's dy / positions everywhere,
    or (is_max) dy at every element equal to the max (tfjs-core's max gradient)."""
    n, positions, channels = x.shape
    scale = 1.0 / positions
    for b in range(n):
        for p in range(positions):
            for c in range(channels):
                if is_max:
                    dx[b, p, c] = dy[b, c] if x[b, p, c] == y[b, c] else 0.0
                else:
                    dx[b, p, c] = dy[b, c] * scale
