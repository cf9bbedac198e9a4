"""The loss formulas, one row function each: `(t, p, out, i, scale, ...) -> loss of row i`,
writing out[i, :] (row_scale * the gradient) as `mode` says. The conventions (TF.js's clips,
gradients, the batch convention) are in kernels/losses.py, which dispatches on the code.
"""

from __future__ import annotations

import math

from trainctl.jit import njit
from trainctl.kernels.activations import softplus

EPSILON = 1e-7  # tfjs-layers backend/common.ts epsilon()
ONE_MINUS_EPSILON = 1.0 - EPSILON
MAX_VALUE = 1.7976931348623157e308  # JavaScript Number.MAX_VALUE, the clip ceiling TF.js uses
LOG_2 = 0.6931471805599453

# What the row functions write into `out`.
LOSS_ONLY = 0
GRAD_WRT_PRED = 1  # out = row_scale * dLoss/dy_pred
GRAD_WRT_LOGITS = 2  # out = row_scale * dLoss/dz through the output activation


@njit
def _clip(value, low, high):
    # tf clipByValue: a NaN passes through unchanged.
    if value > high:
        return high
    if value < low:
        return low
    return value


@njit
def _abs_grad(x):
    """tf abs gradient: step(x, -1), so -1 at x = 0."""
    return 1.0 if x > 0.0 else -1.0


# -- element-wise losses, mean over the row --------------------------------------------------
# One loop per formula on purpose: a shared loop with a per-element switch on the code made
# the loss kernel 2-4x slower (numba has no cheap function values to hoist it).
@njit
def _mean_squared_error(t, p, g, i, scale, need_grad):
    n = p.shape[1]
    f = 2.0 * scale / n
    acc = 0.0
    for j in range(n):
        d = p[i, j] - t[i, j]
        acc += d * d
        if need_grad:
            g[i, j] = f * d
    return acc / n


@njit
def _mean_absolute_error(t, p, g, i, scale, need_grad):
    n = p.shape[1]
    f = scale / n
    acc = 0.0
    for j in range(n):
        d = p[i, j] - t[i, j]
        acc += abs(d)
        if need_grad:
            g[i, j] = f * _abs_grad(d)
    return acc / n


@njit
def _mean_absolute_percentage_error(t, p, g, i, scale, need_grad, kind, exact):
    # 100 * mean(|(t - p) / clip(|t|, eps, MAX)|); in float32 MAX_VALUE is inf, so the metric
    # policy (exact) clips only from below
    n = p.shape[1]
    f = 100.0 * scale / n
    eps = kind(EPSILON)
    big = kind(math.inf) if exact else kind(MAX_VALUE)
    acc = 0.0
    for j in range(n):
        c = abs(t[i, j])
        c = eps if c < eps else (big if c > big else c)
        x = (t[i, j] - p[i, j]) / c
        acc += abs(x)
        if need_grad:
            g[i, j] = -f * _abs_grad(x) / c
    # TF.js: 100 * mean (the metric policy); the loss kernel has always rounded 100 * sum / n
    return 100.0 * (acc / n) if exact else 100.0 * acc / n


@njit
def _mean_squared_logarithmic_error(t, p, g, i, scale, need_grad):
    # mean((log(1 + clip(p, eps, MAX)) - log(1 + clip(t, eps, MAX)))^2)
    n = p.shape[1]
    f = 2.0 * scale / n
    acc = 0.0
    for j in range(n):
        pj = p[i, j]
        inside = pj >= EPSILON and not math.isinf(pj)  # only +inf exceeds MAX_VALUE
        cp = pj if inside else (EPSILON if pj < EPSILON else (MAX_VALUE if pj > MAX_VALUE else pj))  # NaN stays
        tj = t[i, j]
        ct = EPSILON if tj < EPSILON else (MAX_VALUE if math.isinf(tj) else tj)
        d = math.log1p(cp) - math.log1p(ct)
        acc += d * d
        if need_grad:
            g[i, j] = f * d / (1.0 + cp) if inside else 0.0
    return acc / n


@njit
def _squared_hinge(t, p, g, i, scale, need_grad):
    n = p.shape[1]
    f = 2.0 * scale / n
    acc = 0.0
    for j in range(n):
        m = 1.0 - t[i, j] * p[i, j]
        if m > 0.0 or m != m:  # relu(m): NaN passes on, as in TF.js
            acc += m * m
            if need_grad:
                g[i, j] = -f * m * t[i, j]
        elif need_grad:
            g[i, j] = 0.0
    return acc / n


@njit
def _hinge(t, p, g, i, scale, need_grad):
    n = p.shape[1]
    f = scale / n
    acc = 0.0
    for j in range(n):
        m = 1.0 - t[i, j] * p[i, j]
        if m > 0.0:
            acc += m
            if need_grad:
                g[i, j] = -f * t[i, j]
        elif m != m:  # relu(NaN) and its step gradient are NaN (TF.js)
            acc += m
            if need_grad:
                g[i, j] = m
        elif need_grad:
            g[i, j] = 0.0
    return acc / n


@njit
def _logcosh(t, p, g, i, scale, need_grad):
    # mean(d + softplus(-2 d) - log 2), d = p - t; its derivative is tanh(d)
    n = p.shape[1]
    f = scale / n
    acc = 0.0
    for j in range(n):
        d = p[i, j] - t[i, j]
        acc += d + softplus(-2.0 * d) - LOG_2
        if need_grad:
            g[i, j] = f * math.tanh(d)
    return acc / n


@njit
def _poisson(t, p, g, i, scale, need_grad):
    # mean(p - t * log(eps + p))
    n = p.shape[1]
    f = scale / n
    acc = 0.0
    for j in range(n):
        shifted = EPSILON + p[i, j]
        acc += p[i, j] - t[i, j] * math.log(shifted)
        if need_grad:
            g[i, j] = f * (1.0 - t[i, j] / shifted)
    return acc / n


@njit
def _binary_crossentropy(t, p, out, i, scale, mode, kind):
    # c = clip(p, eps, 1 - eps); x = log(c / (1 - c));
    # mean(max(x, 0) - x t + log1p(exp(-|x|)))   (sigmoidCrossEntropyWithLogits)
    # d/dx = sigmoid(x) - t = c - t for every x under tf's relu/abs gradients.
    n = p.shape[1]
    f = scale / n
    eps = kind(EPSILON)
    one = kind(1.0)
    zero = kind(0.0)
    high = one - eps
    acc = 0.0
    for j in range(n):
        pj = p[i, j]
        tj = t[i, j]
        inside = pj >= eps and pj <= high
        # tf clipByValue passes NaN on (it used to become 1 - eps here: a finite loss)
        c = pj if inside else (eps if pj < eps else (high if pj > high else pj))
        x = math.log(c / (one - c))
        acc += (x if x > zero else zero) - x * tj + math.log1p(math.exp(-abs(x)))
        if mode == GRAD_WRT_PRED:
            out[i, j] = f * (c - tj) / (c * (one - c)) if inside else 0.0
        elif mode == GRAD_WRT_LOGITS:
            # chained with sigmoid' = p (1 - p); inside the clip c = p, so it cancels
            # outside the clip the gradient is 0 times sigmoid' = p (1 - p): NaN for a NaN p
            out[i, j] = f * (pj - tj) if inside else (0.0 if pj == pj else pj)
    return acc / n


# -- row reductions --------------------------------------------------------------------------
@njit
def _categorical_hinge(t, p, g, i, scale, need_grad):
    # max(0, 1 + max_j((1 - t_j) p_j) - sum_j t_j p_j)
    n = p.shape[1]
    pos = 0.0
    neg = (1.0 - t[i, 0]) * p[i, 0]
    for j in range(n):
        pos += t[i, j] * p[i, j]
        w = (1.0 - t[i, j]) * p[i, j]
        if w > neg:
            neg = w
    v = 1.0 + (neg - pos)
    active = v > 0.0 or v != v  # relu: NaN passes on (TF.js)
    if need_grad:
        for j in range(n):
            if active:
                w = (1.0 - t[i, j]) * p[i, j]
                tied = 1.0 if w == neg else 0.0
                g[i, j] = scale * (-t[i, j] + (1.0 - t[i, j]) * tied)
            else:
                g[i, j] = 0.0
    return v if active else 0.0


@njit
def _kullback_leibler_divergence(t, p, g, i, scale, need_grad):
    # sum(t * log(clip(t, eps, 1) / clip(p, eps, 1)))
    n = p.shape[1]
    acc = 0.0
    for j in range(n):
        tj = t[i, j]
        pj = p[i, j]
        inside = pj >= EPSILON and pj <= 1.0
        cp = pj if inside else (EPSILON if pj < EPSILON else (1.0 if pj > 1.0 else pj))  # NaN stays NaN
        ct = EPSILON if tj < EPSILON else (1.0 if tj > 1.0 else tj)
        acc += tj * math.log(ct / cp)
        if need_grad:
            g[i, j] = -scale * tj / cp if inside else 0.0
    return acc


@njit
def _cosine_proximity(t, p, g, i, scale, need_grad, kind):
    # -sum(l2Normalize(t) * l2Normalize(p)), l2Normalize(x) = x / sqrt(max(sum(x^2), eps))
    n = p.shape[1]
    eps = kind(EPSILON)
    sum_tt = 0.0
    sum_pp = 0.0
    for j in range(n):
        sum_tt += t[i, j] * t[i, j]
        sum_pp += p[i, j] * p[i, j]
    squares_t = kind(sum_tt)  # the metric policy stores each reduction in y_pred's dtype
    squares_p = kind(sum_pp)
    norm_t = math.sqrt(squares_t if squares_t > eps else eps)
    norm_p = math.sqrt(squares_p if squares_p > eps else eps)
    dot = 0.0
    for j in range(n):
        dot += (t[i, j] / norm_t) * (p[i, j] / norm_p)
    if need_grad:
        # maximum(sum_pp, eps) passes its gradient to sum_pp when sum_pp >= eps
        through_norm = 1.0 if squares_p >= eps else 0.0
        for j in range(n):
            g[i, j] = -scale * (t[i, j] / norm_t - through_norm * dot * (p[i, j] / norm_p)) / norm_p
    return -dot


@njit
def _crossentropy(t, p, out, i, scale, mode, sparse, kind, exact):
    """categorical / sparse categorical crossentropy of row i, as TF.js computes it.

    categorical: q = p / sum(p); L = -sum_j t_j log(clip(q_j, eps, 1 - eps)).
    sparse: p is first clipped to [eps, 1 - eps] (the gradient blocked outside), the
    label floor(t[i, 0]) becomes a one-hot row (a label outside [0, cols) gives a zero
    row, as tf.oneHot does), then the categorical formula runs on the clipped p.

    With m1 the first clip's pass-through (sparse only), m2 the second's and
    A = -sum_k t_k m2_k, the exact gradients are
        dL/dp_j = m1_j (g_j - A) / s          with g_j = -t_j m2_j / q_j
        through softmax: dL/dz_j = P_j - p_j sum_k P_k,  P_j = m1_j (-t_j m2_j - q_j A)
    (P_j = p_j dL/dp_j); written this way the fused form needs no division by q.
    The loss runs in `kind`; the gradient passes (loss policy only) in float64.
    """
    n = p.shape[1]
    eps = kind(EPSILON)
    high = kind(1.0) - eps
    label = -1
    if sparse:
        raw = t[i, 0]
        if raw >= 0.0 and raw < n:
            label = int(math.floor(raw))
    # pass 1: the row sum of the (sparse: clipped) prediction
    row_sum = 0.0
    for j in range(n):
        v = p[i, j]
        if sparse:
            v = eps if v < eps else (high if v > high else v)
        row_sum += v
    s = kind(row_sum)
    # pass 2: the loss and A
    loss = 0.0
    a_sum = 0.0
    for j in range(n):
        # a one-hot entry in `kind`: the product below stays in the policy's dtype
        tj = kind(1.0 if j == label else 0.0) if sparse else t[i, j]
        # 0 * log(clipped) is exactly 0: skip the log (and the division, for the loss); the
        # metric policy keeps a NaN prediction's NaN (0 * log(NaN)), as TF.js does
        if tj == 0.0 and not (exact and not sparse):
            continue
        v = p[i, j]
        if sparse:
            v = eps if v < eps else (high if v > high else v)
        q = v / s
        c = _clip(q, eps, high)
        # `c` is read twice on purpose: a value read once lets LLVM fold log(bound) at compile
        # time (in float64, then rounded: an ulp from float32's run-time log that TF.js takes)
        if tj != 0.0 or c != c:
            loss -= tj * math.log(c)
            if not (q < eps or q > high):  # inside the clip, NaN included
                a_sum -= tj
    if mode == LOSS_ONLY:
        return loss
    # pass 3 (fused): S = sum_k P_k
    big_s = 0.0
    if mode == GRAD_WRT_LOGITS:
        for j in range(n):
            big_s += _crossentropy_p_times_grad(t, p, i, j, s, a_sum, label, sparse)
    # pass 4: the gradient (out may be p when fused: p[i, j] is read before out[i, j] is written)
    for j in range(n):
        if mode == GRAD_WRT_LOGITS:
            pj = p[i, j]
            out[i, j] = scale * (_crossentropy_p_times_grad(t, p, i, j, s, a_sum, label, sparse) - pj * big_s)
        else:
            v = p[i, j]
            m1 = True
            if sparse:
                m1 = v >= EPSILON and v <= ONE_MINUS_EPSILON
                v = EPSILON if v < EPSILON else (ONE_MINUS_EPSILON if v > ONE_MINUS_EPSILON else v)
            if not m1:
                out[i, j] = 0.0
                continue
            q = v / s
            tj = (1.0 if j == label else 0.0) if sparse else t[i, j]
            g = 0.0
            if tj != 0.0 and q >= EPSILON and q <= ONE_MINUS_EPSILON:
                g = -tj / q
            out[i, j] = scale * (g - a_sum) / s
    return loss


@njit
def _crossentropy_p_times_grad(t, p, i, j, s, a_sum, label, sparse):
    """P_j = p_j dL/dp_j = m1_j (-t_j m2_j - q_j A) for the crossentropy above."""
    v = p[i, j]
    if sparse:
        if v < EPSILON or v > ONE_MINUS_EPSILON:
            return 0.0
    q = v / s
    tj = (1.0 if j == label else 0.0) if sparse else t[i, j]
    a = -tj if (q >= EPSILON and q <= ONE_MINUS_EPSILON) else 0.0
    return a - q * a_sum
