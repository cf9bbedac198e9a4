"""Batch and layer normalization: forward and backward, each one kernel call.

Inputs are 3-D C-contiguous views `[pre, k, post]`: batch normalization keeps one statistic
per channel k (reducing over pre and post), layer normalization one per (pre, post) group
(reducing over k). Channels-last batch norm is `[n·positions, channels, 1]`, channels-first
`[n, channels, positions]`. Sums accumulate in float64 around a per-channel shift (the first
value), so one pass gives mean and variance without cancellation.
"""

import math

from trainctl.jit import njit


@njit
def batch_norm_forward(x, gamma, beta, epsilon, training, decay, moving_mean, moving_variance,
                       sums, squares, mean, variance, inv_std, xhat, y):
    """y = gamma·(x − μ)/√(σ² + ε) + beta per channel (axis 1 of x [pre, k, post]).

    training: μ, σ² are the batch's (biased variance, as tf.moments) and the moving statistics
    move as TF.js's doMovingAverage: moving ← moving − (moving − batch)·decay, decay = 1 − momentum.
    inference: μ, σ² are the moving statistics. mean, inv_std [k] and xhat (x's shape) are
    written for backward; sums, squares [k] float64 are scratch.
    """
    pre, k, post = x.shape
    if training:
        count = pre * post
        for c in range(k):
            sums[c] = 0.0
            squares[c] = 0.0
        if post == 1:  # channels last: a loop of length 1 inside would cost more than the work
            x2 = x.reshape(pre, k)
            for i in range(pre):
                for c in range(k):
                    d = x2[i, c] - x2[0, c]
                    sums[c] += d
                    squares[c] += d * d
        else:
            for i in range(pre):
                for c in range(k):
                    shift = x[0, c, 0]
                    for j in range(post):
                        d = x[i, c, j] - shift
                        sums[c] += d
                        squares[c] += d * d
        for c in range(k):
            shift = x[0, c, 0]
            centred = sums[c] / count
            batch_variance = max(squares[c] / count - centred * centred, 0.0)
            mean[c] = shift + centred
            variance[c] = batch_variance  # in the layer's dtype, as TF.js holds it
            inv_std[c] = 1.0 / math.sqrt(batch_variance + epsilon)
            moving_mean[c] = moving_mean[c] - (moving_mean[c] - mean[c]) * decay
            moving_variance[c] = moving_variance[c] - (moving_variance[c] - variance[c]) * decay
    else:
        for c in range(k):
            mean[c] = moving_mean[c]
            variance[c] = moving_variance[c]
            inv_std[c] = 1.0 / math.sqrt(moving_variance[c] + epsilon)
    if post == 1:
        x2, xhat2, y2 = x.reshape(pre, k), xhat.reshape(pre, k), y.reshape(pre, k)
        for i in range(pre):
            for c in range(k):
                h = (x2[i, c] - mean[c]) * inv_std[c]
                xhat2[i, c] = h
                y2[i, c] = h * gamma[c] + beta[c]
        return
    for i in range(pre):
        for c in range(k):
            m, s, g, b = mean[c], inv_std[c], gamma[c], beta[c]
            for j in range(post):
                h = (x[i, c, j] - m) * s
                xhat[i, c, j] = h
                y[i, c, j] = h * g + b


@njit
def batch_norm_backward(dy, xhat, gamma, inv_std, training, need_dx, sum_dy, sum_dy_xhat, dgamma, dbeta, dx):
    """dgamma = Σ dy·xhat, dbeta = Σ dy per channel; dx (when need_dx) through the batch
    statistics in training, through the fixed moving statistics otherwise.
    sum_dy, sum_dy_xhat [k] float64 are scratch; dgamma, dbeta [k] are written."""
    pre, k, post = dy.shape
    for c in range(k):
        sum_dy[c] = 0.0
        sum_dy_xhat[c] = 0.0
    if post == 1:
        dy2, xhat2 = dy.reshape(pre, k), xhat.reshape(pre, k)
        for i in range(pre):
            for c in range(k):
                d = dy2[i, c]
                sum_dy[c] += d
                sum_dy_xhat[c] += d * xhat2[i, c]
    else:
        for i in range(pre):
            for c in range(k):
                for j in range(post):
                    d = dy[i, c, j]
                    sum_dy[c] += d
                    sum_dy_xhat[c] += d * xhat[i, c, j]
    for c in range(k):
        dgamma[c] = sum_dy_xhat[c]
        dbeta[c] = sum_dy[c]
    if not need_dx:
        return
    count = pre * post
    # dx = scale·(dy − mean_dy − xhat·mean_dy_xhat) in training, scale·dy at inference;
    # sum_dy and sum_dy_xhat now hold the two per-channel means (0 at inference)
    for c in range(k):
        sum_dy[c] = sum_dy[c] / count if training else 0.0
        sum_dy_xhat[c] = sum_dy_xhat[c] / count if training else 0.0
    if post == 1:
        dy2, xhat2, dx2 = dy.reshape(pre, k), xhat.reshape(pre, k), dx.reshape(pre, k)
        for i in range(pre):
            for c in range(k):
                dx2[i, c] = gamma[c] * inv_std[c] * (dy2[i, c] - sum_dy[c] - xhat2[i, c] * sum_dy_xhat[c])
        return
    for i in range(pre):
        for c in range(k):
            scale = gamma[c] * inv_std[c]
            mean_dy = sum_dy[c]
            mean_dy_xhat = sum_dy_xhat[c]
            for j in range(post):
                dx[i, c, j] = scale * (dy[i, c, j] - mean_dy - xhat[i, c, j] * mean_dy_xhat)


@njit
def _normalise_group(x, gamma, beta, epsilon, xhat, y):
    """One group x [k] (a row, or a strided column): xhat and y written, 1/std returned."""
    k = x.shape[0]
    shift = x[0]
    total = 0.0
    squares = 0.0
    for c in range(k):
        d = x[c] - shift
        total += d
        squares += d * d
    centred = total / k
    m = shift + centred
    s = 1.0 / math.sqrt(max(squares / k - centred * centred, 0.0) + epsilon)
    for c in range(k):
        h = (x[c] - m) * s
        xhat[c] = h
        y[c] = h * gamma[c] + beta[c]
    return s


@njit
def layer_norm_forward(x, gamma, beta, epsilon, inv_std, xhat, y):
    """Normalise each (pre, post) group over axis 1 of x [pre, k, post]; gamma, beta [k].
    inv_std [pre, post] and xhat are written for backward."""
    pre, k, post = x.shape
    if post == 1:  # the usual case (last axis): contiguous rows
        x2, xhat2, y2, inv2 = x.reshape(pre, k), xhat.reshape(pre, k), y.reshape(pre, k), inv_std.reshape(pre)
        for i in range(pre):
            inv2[i] = _normalise_group(x2[i], gamma, beta, epsilon, xhat2[i], y2[i])
        return
    for i in range(pre):
        for j in range(post):
            inv_std[i, j] = _normalise_group(x[i, :, j], gamma, beta, epsilon, xhat[i, :, j], y[i, :, j])


@njit
def _group_backward(dy, xhat, gamma, s, need_dx, dgamma_acc, dbeta_acc, dx):
    """One group's gradients (vectors [k]); dgamma_acc, dbeta_acc accumulate."""
    k = dy.shape[0]
    mean_g = 0.0
    mean_gx = 0.0
    for c in range(k):
        d = dy[c]
        h = xhat[c]
        dgamma_acc[c] += d * h
        dbeta_acc[c] += d
        g = d * gamma[c]
        mean_g += g
        mean_gx += g * h
    if need_dx:
        mean_g /= k
        mean_gx /= k
        for c in range(k):
            dx[c] = s * (dy[c] * gamma[c] - mean_g - xhat[c] * mean_gx)


@njit
def layer_norm_backward(dy, xhat, gamma, inv_std, need_dx, dgamma_acc, dbeta_acc, dgamma, dbeta, dx):
    """Gradients of layer_norm_forward; dgamma_acc, dbeta_acc [k] float64 are scratch."""
    pre, k, post = dy.shape
    for c in range(k):
        dgamma_acc[c] = 0.0
        dbeta_acc[c] = 0.0
    if post == 1:
        dy2, xhat2, dx2, inv2 = dy.reshape(pre, k), xhat.reshape(pre, k), dx.reshape(pre, k), inv_std.reshape(pre)
        for i in range(pre):
            _group_backward(dy2[i], xhat2[i], gamma, inv2[i], need_dx, dgamma_acc, dbeta_acc, dx2[i])
    else:
        for i in range(pre):
            for j in range(post):
                _group_backward(dy[i, :, j], xhat[i, :, j], gamma, inv_std[i, j], need_dx, dgamma_acc, dbeta_acc,
                                dx[i, :, j])
    for c in range(k):
        dgamma[c] = dgamma_acc[c]
        dbeta[c] = dbeta_acc[c]
