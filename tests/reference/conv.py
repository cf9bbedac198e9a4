"""Plain-numpy convolution and pooling, written from the TF.js definitions (tfjs-core
conv_util computeConv2DInfo: 'same' → out = ceil(in / stride), pad_total = max((out - 1) *
stride + effective_kernel - in, 0), pad_top = pad_total // 2). Slow loops on purpose,
channels_last [n, h, w, c], float64."""

from __future__ import annotations

import math

import numpy as np


def out_and_pad(size: int, kernel: int, stride: int, dilation: int, padding: str) -> tuple[int, int]:
    effective = (kernel - 1) * dilation + 1
    if padding == "same":
        out = math.ceil(size / stride)
        total = max((out - 1) * stride + effective - size, 0)
        return out, total // 2
    return math.ceil((size - effective + 1) / stride), 0


def _taps(x_shape, kh, kw, strides, dilation, padding):
    """(oh, ow, taps) of a strided, dilated window over x [n, h, w, ...]: taps yields every
    (b, i, j, p, q, r, s) where output pixel (i, j) of sample b reads input pixel (r, s)
    through kernel tap (p, q), in the order a direct loop would visit them."""
    n, h, w = x_shape[:3]
    oh, pt = out_and_pad(h, kh, strides[0], dilation[0], padding)
    ow, pl = out_and_pad(w, kw, strides[1], dilation[1], padding)

    def taps():
        for b in range(n):
            for i in range(oh):
                for j in range(ow):
                    for p in range(kh):
                        for q in range(kw):
                            r = i * strides[0] - pt + p * dilation[0]
                            s = j * strides[1] - pl + q * dilation[1]
                            if 0 <= r < h and 0 <= s < w:
                                yield b, i, j, p, q, r, s

    return oh, ow, taps()


def conv2d(x, kernel, strides=(1, 1), dilation=(1, 1), padding="valid"):
    """x [n, h, w, c], kernel [kh, kw, c, f] → [n, oh, ow, f]."""
    n = x.shape[0]
    kh, kw, _, f = kernel.shape
    oh, ow, taps = _taps(x.shape, kh, kw, strides, dilation, padding)
    y = np.zeros((n, oh, ow, f))
    for b, i, j, p, q, r, s in taps:
        y[b, i, j] += x[b, r, s] @ kernel[p, q]
    return y


def conv2d_transpose(x, kernel, strides, padding):
    """TF.js conv2dTranspose as a scatter: each input pixel adds x * kernel to its window of
    the output. x [n, h, w, cin], kernel [kh, kw, f, cin] → [n, oh, ow, f]."""
    n, h, w, cin = x.shape
    kh, kw, f, _ = kernel.shape

    def length(size, s, k):
        return size * s + max(k - s, 0) if padding == "valid" else size * s

    oh, ow = length(h, strides[0], kh), length(w, strides[1], kw)
    _, pt = out_and_pad(oh, kh, strides[0], 1, padding)
    _, pl = out_and_pad(ow, kw, strides[1], 1, padding)
    y = np.zeros((n, oh, ow, f))
    for b in range(n):
        for i in range(h):
            for j in range(w):
                for p in range(kh):
                    for q in range(kw):
                        r, s = i * strides[0] - pt + p, j * strides[1] - pl + q
                        if 0 <= r < oh and 0 <= s < ow:
                            y[b, r, s] += kernel[p, q] @ x[b, i, j]
    return y


def depthwise_conv2d(x, kernel, strides=(1, 1), dilation=(1, 1), padding="valid"):
    """x [n, h, w, c], kernel [kh, kw, c, m] → [n, oh, ow, c * m], channel c * m + k."""
    n, _, _, c = x.shape
    kh, kw, _, m = kernel.shape
    oh, ow, taps = _taps(x.shape, kh, kw, strides, dilation, padding)
    y = np.zeros((n, oh, ow, c, m))
    for b, i, j, p, q, r, s in taps:
        y[b, i, j] += x[b, r, s][:, None] * kernel[p, q]
    return y.reshape(n, oh, ow, c * m)


def pool2d(x, pool, strides, padding, mode):
    """TF.js maxPool / avgPool: windows see only real pixels; avg divides by their count."""
    n, h, w, c = x.shape
    oh, pt = out_and_pad(h, pool[0], strides[0], 1, padding)
    ow, pl = out_and_pad(w, pool[1], strides[1], 1, padding)
    y = np.zeros((n, oh, ow, c))
    for i in range(oh):
        for j in range(ow):
            r0, s0 = i * strides[0] - pt, j * strides[1] - pl
            window = x[:, max(r0, 0):min(r0 + pool[0], h), max(s0, 0):min(s0 + pool[1], w)]
            y[:, i, j] = window.max(axis=(1, 2)) if mode == "max" else window.mean(axis=(1, 2))
    return y
