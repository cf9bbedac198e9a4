"""What the recurrent time loops share (kernels/recurrent.py SimpleRNN, recurrent_lstm.py,
recurrent_gru.py): the element-wise gate activations (the float32 fast forms of tanh and
sigmoid), the per-activation-pair specialisation of a loop, and the inlined per-step pieces
every cell uses (issue 9). The conventions are in kernels/recurrent.py's docstring."""

from __future__ import annotations

import numpy as np

from trainctl.jit import njit
from trainctl.kernels.activations import _derivative, _forward
from trainctl.kernels.codes import HARD_SIGMOID, SIGMOID, TANH

# tanh as a rational polynomial (Eigen's / XLA's float32 form: clamp at +-7.905, then a
# degree-13/6 odd rational): max abs error 2.4e-7 on float32 inputs, and it vectorises,
# where a libm call per element does not — measured 2.9 ms vs 42 ms over 409,600 gate values
# (bench/rnn_speed.py's LSTM forward at batch 32). Used for float32 only; float64 (the
# gradient checks) keeps the exact functions. Derivatives are taken from the stored outputs
# (1 - y^2, y(1 - y)) as TF.js's gradients are.
# The constants are float32 so that float32 arguments are computed in float32 (a float64
# constant would promote the whole polynomial).
_TANH_CLAMP = np.float32(7.90531110763549805)
_NEG_TANH_CLAMP = np.float32(-7.90531110763549805)
_A13, _A11, _A9 = np.float32(-2.76076847742355e-16), np.float32(2.00018790482477e-13), np.float32(-8.60467152213735e-11)
_A7, _A5, _A3 = np.float32(5.12229709037114e-08), np.float32(1.48572235717979e-05), np.float32(6.37261928875436e-04)
_A1 = np.float32(4.89352455891786e-03)
_B6, _B4 = np.float32(1.19825839466702e-06), np.float32(1.18534705686654e-04)
_B2, _B0 = np.float32(2.26843463243900e-03), np.float32(4.89352518554385e-03)
ONE, HALF = np.float32(1.0), np.float32(0.5)


@njit(inline="always")
def _tanh_fast(x):
    x = _NEG_TANH_CLAMP if x < _NEG_TANH_CLAMP else (_TANH_CLAMP if x > _TANH_CLAMP else x)
    x2 = x * x
    p = x2 * _A13 + _A11
    p = x2 * p + _A9
    p = x2 * p + _A7
    p = x2 * p + _A5
    p = x2 * p + _A3
    p = x2 * p + _A1
    q = x2 * _B6 + _B4
    q = x2 * q + _B2
    q = x2 * q + _B0
    return x * p / q


@njit(inline="always")
def _act(x, code, fast):
    """act(x); `fast` (float32 buffers) takes the vectorising forms of tanh and sigmoid."""
    if fast:
        if code == TANH:
            return _tanh_fast(x)
        if code == SIGMOID:
            return HALF * _tanh_fast(HALF * x) + HALF
    if code == HARD_SIGMOID:  # kernels/activations.py's formula, here so that it vectorises
        v = 0.2 * x + 0.5
        return 0.0 if v <= 0.0 else (1.0 if v >= 1.0 else v)
    return _forward(x, code)


@njit(inline="always")
def _dact(x, y, code):
    """d act / dx from the output for the gate activations (branch-free, so loops vectorise),
    the general table for the rest."""
    if code == TANH:
        return ONE - y * y
    if code == SIGMOID:
        return y * (ONE - y)
    if code == HARD_SIGMOID:  # clipByValue's gradient passes at the bounds (as kernels/activations.py)
        v = 0.2 * x + 0.5
        return 0.2 if (v >= 0.0 and v <= 1.0) else 0.0
    return _derivative(x, y, code)


@njit(inline="always")
def _gate_block(pre, gates, t, b, start, stop, code, fast):
    """gates[t, b, start:stop] = act(pre[t, b, start:stop]): one activation per loop, so the
    loop vectorises."""
    if fast and code == TANH:
        for k in range(start, stop):
            gates[t, b, k] = _tanh_fast(pre[t, b, k])
    elif fast and code == SIGMOID:
        for k in range(start, stop):
            gates[t, b, k] = HALF * _tanh_fast(HALF * pre[t, b, k]) + HALF
    elif code == HARD_SIGMOID:
        for k in range(start, stop):
            gates[t, b, k] = _act(pre[t, b, k], HARD_SIGMOID, fast)
    else:
        for k in range(start, stop):
            gates[t, b, k] = _act(pre[t, b, k], code, fast)


@njit(inline="always")
def _source_step(t, steps, backwards):
    return steps - 1 - t if backwards else t


_KERNELS: dict = {}


def _specialised(make, *codes):
    """The time loop `make` builds, compiled for these activation codes (and float32 fast
    path flag) as constants: the inlined step loops fold `_act`/`_dact`'s branches away and
    vectorise (measured: LSTM b32 forward 1640 -> 1183 us, BPTT 1370 -> 912, GRU BPTT
    1364 -> 556). Only the combinations a model uses are compiled (a switch over the common
    pairs inside one kernel compiled every copy for every dtype: ~3x the compile time); numba
    caches each on disk under its captured values."""
    key = (make, *(int(code) for code in codes))
    kernel = _KERNELS.get(key)
    if kernel is None:
        kernel = _KERNELS[key] = make(*key[1:])
    return kernel


# -- what every cell shares (issue 9): inlined, so the loops compile as if written out --------------
@njit(inline="always")
def _drop_state(hs, rmask, hd, t):
    """hd[t] = hs[t] * rmask: the previous state as the recurrent product sees it."""
    n, units = rmask.shape
    for b in range(n):
        for j in range(units):
            hd[t, b, j] = hs[t, b, j] * rmask[b, j]


@njit(inline="always")
def _gru_state(hs, hd, gates, mask, t, b, s, units):
    """hs[t+1, b] = z*hd + (1-z)*hh of the gates [z, r, hh] (both GRU variants), or hs[t, b]
    where the step is masked."""
    if mask[b, s] != 0.0:
        for j in range(units):
            z, hh = gates[t, b, j], gates[t, b, 2 * units + j]
            hs[t + 1, b, j] = z * hd[t, b, j] + (ONE - z) * hh
    else:
        for j in range(units):
            hs[t + 1, b, j] = hs[t, b, j]


@njit(inline="always")
def _add_input(pre, bias, rec, t):
    """pre[t] = (pre[t] + bias) + rec: pre holds x @ kernel; the sum in the order of the
    projection-then-bias-then-recurrent formulation."""
    n, width = rec.shape
    for b in range(n):
        for k in range(width):
            pre[t, b, k] = (pre[t, b, k] + bias[k]) + rec[b, k]


@njit(inline="always")
def _start_grad(dh, dy_last, sequences, db):
    """dh = dLoss/d(last state) (the last output's gradient, or zero when every step's output
    has its own, added per step); the bias gradient starts at zero."""
    n, units = dh.shape
    for b in range(n):
        for j in range(units):
            dh[b, j] = 0.0 if sequences else dy_last[b, j]
    db[:] = 0.0


@njit(inline="always")
def _sum_bias_grad(db, dz, t, b):
    for k in range(dz.shape[2]):
        db[k] += dz[t, b, k]


@njit(inline="always")
def _carry_grad(dh, dprev, rmask, mask, s):
    """dh = dLoss/d(previous state) through the recurrent product; a masked step passed its
    state through, so its dh stays."""
    n, units = dh.shape
    for b in range(n):
        if mask[b, s] != 0.0:
            for j in range(units):
                dh[b, j] = dprev[b, j] * rmask[b, j]
