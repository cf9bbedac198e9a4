"""Optimizer updates, one fused kernel per optimizer, plus the clip and regularizer helpers.

Every update works in place on 1-D views: `value` (the weight), `grad` (read only) and the
optimizer's slots, all of one dtype (float32 or float64). Scalar arguments arrive already
cast to that dtype by the caller, so float32 runs round after every operation exactly as
TF.js does (a float64 scalar would silently promote the arithmetic). The order of each
expression follows the TF.js source cited above each kernel.

Gradient clipping is folded into the read of the gradient: `grad_scale` (clipnorm's factor,
exactly 1 when there is nothing to rescale) and `clipvalue` (<= 0 means no clipping), so the
caller's gradient buffer is never modified.
"""

from __future__ import annotations

import math

import numpy as np
from numba import types
from numba.core.extending import overload

from trainctl.jit import DAZ, FTZ, MXCSR_SUPPORTED, njit

_FTZ_DAZ = FTZ | DAZ  # MXCSR flush-to-zero (bit 15) and denormals-are-zero (bit 6), jit/fpu.py


def _reciprocal_is_exact(value):
    """True when x / c may be computed as float32(float64(x) * (1 / float64(c))) for float32 x
    and c on this thread: the two agree bit for bit for every x and c except when the quotient
    is a denormal (a quotient of two 24-bit numbers is never within 2^-50 of a float32
    rounding boundary; the float64 product is within 2^-52 of it), so only while FTZ and DAZ
    are on (trainctl's default: jit/fpu.py), and only for float32."""


@overload(_reciprocal_is_exact, inline="always")
def _reciprocal_is_exact_impl(value):
    if not (MXCSR_SUPPORTED and isinstance(value, types.Array) and value.dtype == types.float32):
        return lambda value: False
    from trainctl.jit import stmxcsr

    return lambda value: (stmxcsr() & _FTZ_DAZ) == _FTZ_DAZ


@njit(inline="always")
def _divided(x, c, reciprocal, by_reciprocal):
    """x / c, exactly (see _reciprocal_is_exact); c is loop-invariant, reciprocal = 1 / float64(c).
    The divider is what bounds the vectorised updates (vdivps: ~10 us per 25k float32 values
    here), the multiplication is not."""
    if by_reciprocal:  # only ever true for float32 x
        return np.float32(np.float64(x) * reciprocal)
    return x / c


@njit(inline="always")
def _clipped(g, grad_scale, clipvalue, rescale, clip):
    if rescale:
        g = g * grad_scale
    if clip:
        if g > clipvalue:
            g = clipvalue
        elif g < -clipvalue:
            g = -clipvalue
    return g


@njit
def l2_norm(x):
    """sqrt(sum(x**2)) of a 1-D array, accumulated in float64 in index order (deterministic)."""
    total = 0.0
    for i in range(x.shape[0]):
        v = np.float64(x[i])
        total += v * v
    return math.sqrt(total)


# tfjs-core/src/optimizers/sgd_optimizer.ts: value = c * g + value, c = -learningRate
@njit
def sgd_update(value, grad, neg_lr, grad_scale, clipvalue):
    rescale = grad_scale != 1
    clip = clipvalue > 0
    for i in range(value.shape[0]):
        g = _clipped(grad[i], grad_scale, clipvalue, rescale, clip)
        value[i] = neg_lr * g + value[i]


# tfjs-core/src/optimizers/momentum_optimizer.ts:
#   acc' = m * acc + g
#   value = c * (g + acc' * m) + value   (Nesterov)   |   value = c * acc' + value
@njit
def momentum_update(value, grad, accumulation, neg_lr, momentum, use_nesterov, grad_scale, clipvalue):
    rescale = grad_scale != 1
    clip = clipvalue > 0
    for i in range(value.shape[0]):
        g = _clipped(grad[i], grad_scale, clipvalue, rescale, clip)
        acc = momentum * accumulation[i] + g
        if use_nesterov:
            value[i] = neg_lr * (g + acc * momentum) + value[i]
        else:
            value[i] = neg_lr * acc + value[i]
        accumulation[i] = acc


# tfjs-core/src/optimizers/adam_optimizer.ts:
#   m' = m * b1 + g * (1 - b1);  v' = v * b2 + g^2 * (1 - b2)
#   value = (m' / (1 - accB1)) / (sqrt(v' / (1 - accB2)) + eps) * -lr + value
@njit
def adam_update(value, grad, m, v, neg_lr, beta1, beta2, one_minus_beta1, one_minus_beta2,
                one_minus_acc_beta1, one_minus_acc_beta2, epsilon, grad_scale, clipvalue):
    rescale = grad_scale != 1
    clip = clipvalue > 0
    by_reciprocal = _reciprocal_is_exact(value)
    reciprocal1 = 1.0 / np.float64(one_minus_acc_beta1)
    reciprocal2 = 1.0 / np.float64(one_minus_acc_beta2)
    for i in range(value.shape[0]):
        g = _clipped(grad[i], grad_scale, clipvalue, rescale, clip)
        m_new = m[i] * beta1 + g * one_minus_beta1
        v_new = v[i] * beta2 + (g * g) * one_minus_beta2
        m_hat = _divided(m_new, one_minus_acc_beta1, reciprocal1, by_reciprocal)
        v_hat = _divided(v_new, one_minus_acc_beta2, reciprocal2, by_reciprocal)
        m[i] = m_new
        v[i] = v_new
        value[i] = (m_hat / (np.sqrt(v_hat) + epsilon)) * neg_lr + value[i]


# tfjs-core/src/optimizers/adamax_optimizer.ts:
#   lr_t = -lr / (iteration * decay + 1)
#   m' = m * b1 + g * (1 - b1);  u' = max(u * b2, |g|)
#   value = (lr_t / (1 - accB1)) * (m' / (u' + eps)) + value
@njit
def adamax_update(value, grad, m, u, step_factor, beta1, beta2, one_minus_beta1, epsilon,
                  grad_scale, clipvalue):
    """step_factor = lr_t / (1 - accB1), computed once per step by the caller."""
    rescale = grad_scale != 1
    clip = clipvalue > 0
    for i in range(value.shape[0]):
        g = _clipped(grad[i], grad_scale, clipvalue, rescale, clip)
        m_new = m[i] * beta1 + g * one_minus_beta1
        ut0 = u[i] * beta2
        ut1 = abs(g)
        u_new = ut0 if ut0 > ut1 else ut1
        if ut0 != ut0:  # maximum() propagates NaN from either side, like tf.maximum
            u_new = ut0
        m[i] = m_new
        u[i] = u_new
        value[i] = step_factor * (m_new / (u_new + epsilon)) + value[i]


# tfjs-core/src/optimizers/adagrad_optimizer.ts:
#   acc' = acc + g^2;  value = (g / sqrt(acc' + eps)) * -lr + value   (eps inside the sqrt)
@njit
def adagrad_update(value, grad, accumulator, neg_lr, epsilon, grad_scale, clipvalue):
    rescale = grad_scale != 1
    clip = clipvalue > 0
    for i in range(value.shape[0]):
        g = _clipped(grad[i], grad_scale, clipvalue, rescale, clip)
        acc = accumulator[i] + g * g
        accumulator[i] = acc
        value[i] = (g / np.sqrt(acc + epsilon)) * neg_lr + value[i]


# tfjs-core/src/optimizers/adadelta_optimizer.ts:
#   accG' = accG * rho + g^2 * (1 - rho)
#   update = sqrt(accU + eps) / sqrt(accG + eps) * g      (TF.js divides by the OLD accG)
#   accU' = accU * rho + update^2 * (1 - rho);  value = update * -lr + value
@njit
def adadelta_update(value, grad, accum_grad, accum_var, neg_lr, rho, one_minus_rho, epsilon,
                    grad_scale, clipvalue):
    rescale = grad_scale != 1
    clip = clipvalue > 0
    for i in range(value.shape[0]):
        g = _clipped(grad[i], grad_scale, clipvalue, rescale, clip)
        acc_g = accum_grad[i]
        acc_u = accum_var[i]
        new_acc_g = acc_g * rho + (g * g) * one_minus_rho
        update = (np.sqrt(acc_u + epsilon) / np.sqrt(acc_g + epsilon)) * g
        new_acc_u = acc_u * rho + (update * update) * one_minus_rho
        accum_grad[i] = new_acc_g
        accum_var[i] = new_acc_u
        value[i] = update * neg_lr + value[i]


# tfjs-core/src/optimizers/rmsprop_optimizer.ts:
#   ms' = ms * decay + g^2 * (1 - decay)
#   plain:    mom' = mom * momentum + (g * lr) / sqrt(ms' + eps)
#   centered: mg' = mg * decay + g * (1 - decay)
#             mom' = mom * momentum + (g * lr) / sqrt(ms' - (mg'^2 + eps))
#   value = value - mom'
@njit
def rmsprop_update(value, grad, rms, moment, lr, decay, one_minus_decay, momentum, epsilon,
                   grad_scale, clipvalue):
    rescale = grad_scale != 1
    clip = clipvalue > 0
    for i in range(value.shape[0]):
        g = _clipped(grad[i], grad_scale, clipvalue, rescale, clip)
        ms = rms[i] * decay + (g * g) * one_minus_decay
        mom = moment[i] * momentum + (g * lr) / np.sqrt(ms + epsilon)
        rms[i] = ms
        moment[i] = mom
        value[i] = value[i] - mom


@njit
def rmsprop_centered_update(value, grad, rms, moment, mean_grad, lr, decay, one_minus_decay,
                            momentum, epsilon, grad_scale, clipvalue):
    rescale = grad_scale != 1
    clip = clipvalue > 0
    for i in range(value.shape[0]):
        g = _clipped(grad[i], grad_scale, clipvalue, rescale, clip)
        ms = rms[i] * decay + (g * g) * one_minus_decay
        mg = mean_grad[i] * decay + g * one_minus_decay
        mom = moment[i] * momentum + (g * lr) / np.sqrt(ms - (mg * mg + epsilon))
        rms[i] = ms
        mean_grad[i] = mg
        moment[i] = mom
        value[i] = value[i] - mom


# -- regularizers (tfjs-layers/src/regularizers.ts: sum(l1 * |x|) + sum(l2 * x^2)) ----------


@njit
def l1l2_penalty(x, l1, l2):
    """l1 * sum|x| + l2 * sum x^2 of a 1-D array, accumulated in float64 in index order."""
    sum_abs = 0.0
    sum_sq = 0.0
    for i in range(x.shape[0]):
        v = np.float64(x[i])
        sum_abs += abs(v)
        sum_sq += v * v
    return l1 * sum_abs + l2 * sum_sq


@njit
def l1l2_add_grad(x, grad, l1, two_l2):
    """grad += l1 * sign(x) + 2 * l2 * x, in place; l1 and two_l2 in x's dtype."""
    for i in range(x.shape[0]):
        v = x[i]
        if v > 0:
            s = l1
        elif v < 0:
            s = -l1
        else:
            s = l1 - l1  # sign(0) = 0, in x's dtype (a NaN x stays NaN through the L2 term)
        grad[i] = grad[i] + (s + two_l2 * v)
