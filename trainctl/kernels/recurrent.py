"""The time loops of the recurrent layers: SimpleRNN, LSTM and GRU (both reset conventions).

One compiled function per cell kind and direction of the computation (forward, and
backpropagation through time). The input projection for every step, `x @ kernel`, is one
matmul done by the caller before the loop, straight into the time-major pre-activation
buffer `pre` [steps, n, gates*units] (inputs in processing order); the loop adds the bias
and each step's product with the recurrent kernel (one `np.dot` into a preallocated
buffer; two for reset-before GRU) in place, and the gates are fused element-wise. The BPTT
loop leaves dz [steps, n, gates*units] in the same layout and sums the bias gradient as it
goes, so the weight gradients after the loop are one matmul each over the stacked steps
(`dW = X^T @ dZ`, `dU = H^T @ dZ`, `dX = dZ @ W^T`), by the caller, with no transposed copy.
Measured alternatives (bench/rnn_speed.py --profile, issue 11): a hand-written 32x64 @ 64x256
product in the loop ran 36-49 us against np.dot's 11 us (BLAS); batch-major buffers needed a
transposed copy of dz (340 us per LSTM batch of 32) and a separate bias pass.

Conventions (TF.js tfjs-layers/src/layers/recurrent.ts):
- time-major buffers indexed by processing step t; `s = steps-1-t` when going backwards
  (the mask [n, steps] is in time order);
- per-step outputs are stacked in processing order (a backwards layer returns the reversed
  sequence, as TF.js does);
- `mask[b, s] == 0` makes the step keep the previous state and output it again;
- `rmask` is the recurrent-dropout mask [n, units] (ones when off), applied to the previous
  state where it enters the recurrent product (and, for GRU, where TF.js uses it in the carry);
- gate order: LSTM i, f, c, o; GRU z, r, h (TF.js and Keras).
Activations are element-wise codes from `trainctl.kernels.codes`. The gate arithmetic stays
in the buffers' precision (constants are float32, exact in float64): float32 op by op as
TF.js computes it, and twice the vector width of a float64 chain (the gate loops ran 2x
faster); float64 buffers (the gradient checks) compute in float64.
"""

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



# -- SimpleRNN: h = act(x@W + b + (h_prev*rmask) @ U) --------------------------------------------
def _simple_rnn_forward_for(act, fast):
    @njit
    def simple_rnn_forward(pre, recurrent_kernel, bias, mask, rmask, hs, hd, rec, backwards):
        steps, n, units = pre.shape
        for t in range(steps):
            s = _source_step(t, steps, backwards)
            _drop_state(hs, rmask, hd, t)
            np.dot(hd[t], recurrent_kernel, rec)
            _add_input(pre, bias, rec, t)
            for b in range(n):
                keep = mask[b, s] != 0.0
                for j in range(units):
                    hs[t + 1, b, j] = _act(pre[t, b, j], act, fast) if keep else hs[t, b, j]
    return simple_rnn_forward


def simple_rnn_forward(pre, recurrent_kernel, bias, mask, rmask, hs, hd, rec, backwards, act, fast):
    """pre [T,n,u]: x @ kernel on entry (processing order), the pre-activations on return;
    hs [T+1,n,u] with hs[0] the initial state (filled here from t=1); hd [T,n,u] the dropped
    previous states; rec [n,u] scratch."""
    return _specialised(_simple_rnn_forward_for, act, fast)(pre, recurrent_kernel, bias, mask, rmask, hs, hd, rec, backwards)


def _simple_rnn_backward_for(act):
    @njit
    def simple_rnn_backward(dy_seq, dy_last, sequences, recurrent_kernel_t, mask, rmask, hs, pre, dz, db, dh, dprev,
                               backwards):
        steps, n, units = pre.shape
        _start_grad(dh, dy_last, sequences, db)
        for t in range(steps - 1, -1, -1):
            s = _source_step(t, steps, backwards)
            for b in range(n):
                keep = mask[b, s] != 0.0
                for j in range(units):
                    g = dh[b, j] + (dy_seq[b, t, j] if sequences else 0.0)
                    dh[b, j] = g
                    dz[t, b, j] = g * _dact(pre[t, b, j], hs[t + 1, b, j], act) if keep else 0.0
                _sum_bias_grad(db, dz, t, b)
            np.dot(dz[t], recurrent_kernel_t, dprev)
            _carry_grad(dh, dprev, rmask, mask, s)
    return simple_rnn_backward


def simple_rnn_backward(dy_seq, dy_last, sequences, recurrent_kernel_t, mask, rmask, hs, pre, dz, db, dh, dprev,
                        backwards, act):
    """dy_seq [n,T,u] (when `sequences`) or dy_last [n,u] (the last output; the other one is
    an empty placeholder, as numba types both); fills dz [T,n,u] = dLoss/dpre per step
    (zero on masked steps), db [u] = the bias gradient, and leaves dh [n,u] = dLoss/d(initial
    state). dprev [n,u] scratch."""
    return _specialised(_simple_rnn_backward_for, act)(dy_seq, dy_last, sequences, recurrent_kernel_t, mask, rmask, hs, pre, dz, db, dh, dprev, backwards)


# -- LSTM ------------------------------------------------------------------------------------------
@njit(inline="always")
def _lstm_step(mask, hs, cs, pre, gates, act_c, t, s, act, ract, fast):
    """gates[t], cs[t+1], act_c[t], hs[t+1] from the pre-activations pre[t]."""
    n, units = act_c.shape[1], act_c.shape[2]
    four_units = 4 * units
    for b in range(n):
        # one activation per branch-free loop over units, so LLVM vectorises them
        _gate_block(pre, gates, t, b, 0, 2 * units, ract, fast)  # i, f
        _gate_block(pre, gates, t, b, 2 * units, 3 * units, act, fast)  # c~
        _gate_block(pre, gates, t, b, 3 * units, four_units, ract, fast)  # o
        if mask[b, s] != 0.0:
            # c in the buffers' precision, then act(c): the rounding TF.js's float32 ops give
            for j in range(units):
                cs[t + 1, b, j] = gates[t, b, units + j] * cs[t, b, j] + gates[t, b, j] * gates[t, b, 2 * units + j]
            for j in range(units):
                act_c[t, b, j] = _act(cs[t + 1, b, j], act, fast)
            for j in range(units):
                hs[t + 1, b, j] = gates[t, b, 3 * units + j] * act_c[t, b, j]
        else:  # a masked step keeps the state
            for j in range(units):
                cs[t + 1, b, j] = cs[t, b, j]
                act_c[t, b, j] = 0.0
                hs[t + 1, b, j] = hs[t, b, j]


def _lstm_forward_for(act, ract, fast):
    @njit
    def lstm_forward(pre, recurrent_kernel, bias, mask, rmask, hs, cs, hd, gates, act_c, rec, backwards):
        steps = pre.shape[0]
        for t in range(steps):
            s = _source_step(t, steps, backwards)
            _drop_state(hs, rmask, hd, t)
            np.dot(hd[t], recurrent_kernel, rec)
            _add_input(pre, bias, rec, t)
            _lstm_step(mask, hs, cs, pre, gates, act_c, t, s, act, ract, fast)
    return lstm_forward


def lstm_forward(pre, recurrent_kernel, bias, mask, rmask, hs, cs, hd, gates, act_c, rec, backwards, act, ract, fast):
    """pre [T,n,4u]: x @ kernel on entry, the pre-activations on return; hs, cs [T+1,n,u]
    (index 0: initial states); hd [T,n,u]; gates [T,n,4u] (activated i, f, c~, o); act_c [T,n,u]
    = act(c); rec [n,4u] scratch."""
    return _specialised(_lstm_forward_for, act, ract, fast)(pre, recurrent_kernel, bias, mask, rmask, hs, cs, hd, gates, act_c, rec, backwards)


@njit(inline="always")
def _lstm_step_grad(dy_seq, sequences, mask, cs, pre, gates, act_c, dz, db, dh, dc, t, s, act, ract):
    """dz[t] and db from dh, dc (dLoss/d state after step t); dc becomes dLoss/dc_{t-1}.
    Each loop over units touches few arrays, so LLVM vectorises it (one loop over all of
    them did not: too many possible overlaps to check)."""
    n, units = dh.shape
    four_units = 4 * units
    for b in range(n):
        if sequences:
            for j in range(units):
                dh[b, j] += dy_seq[b, t, j]
        if mask[b, s] == 0.0:  # the step passed its states through: dh, dc stay
            for k in range(four_units):
                dz[t, b, k] = 0.0
            continue
        # dc <- dLoss/dc_t (the carried part plus the path through h = o * act(c)); the o gate
        for j in range(units):
            go, ac = gates[t, b, 3 * units + j], act_c[t, b, j]
            g_h = dh[b, j]
            dc[b, j] += g_h * go * _dact(cs[t + 1, b, j], ac, act)
            dz[t, b, 3 * units + j] = g_h * ac * _dact(pre[t, b, 3 * units + j], go, ract)
        for j in range(units):  # i and c~
            gi, gc, g_c = gates[t, b, j], gates[t, b, 2 * units + j], dc[b, j]
            dz[t, b, j] = g_c * gc * _dact(pre[t, b, j], gi, ract)
            dz[t, b, 2 * units + j] = g_c * gi * _dact(pre[t, b, 2 * units + j], gc, act)
        for j in range(units):  # f, and dc carried to the previous step
            gf, g_c = gates[t, b, units + j], dc[b, j]
            dz[t, b, units + j] = g_c * cs[t, b, j] * _dact(pre[t, b, units + j], gf, ract)
            dc[b, j] = g_c * gf
        _sum_bias_grad(db, dz, t, b)


def _lstm_backward_for(act, ract):
    @njit
    def lstm_backward(dy_seq, dy_last, sequences, recurrent_kernel_t, mask, rmask, cs, pre, gates, act_c, dz, db, dh,
                         dc, dprev, backwards):
        steps = pre.shape[0]
        _start_grad(dh, dy_last, sequences, db)
        dc[:] = 0.0
        for t in range(steps - 1, -1, -1):
            s = _source_step(t, steps, backwards)
            _lstm_step_grad(dy_seq, sequences, mask, cs, pre, gates, act_c, dz, db, dh, dc, t, s, act, ract)
            np.dot(dz[t], recurrent_kernel_t, dprev)
            _carry_grad(dh, dprev, rmask, mask, s)
    return lstm_backward


def lstm_backward(dy_seq, dy_last, sequences, recurrent_kernel_t, mask, rmask, cs, pre, gates, act_c, dz, db, dh, dc,
                  dprev, backwards, act, ract):
    """Fills dz [T,n,4u] = dLoss/dpre per step and db [4u]; leaves dh, dc [n,u] for the
    initial states."""
    return _specialised(_lstm_backward_for, act, ract)(dy_seq, dy_last, sequences, recurrent_kernel_t, mask, rmask, cs, pre, gates, act_c, dz, db, dh, dc, dprev, backwards)


# -- GRU, reset gate before the recurrent product (TF.js; Keras reset_after=False) ------------------
def _gru_forward_for(act, ract, fast):
    @njit
    def gru_forward(pre, kernel_zr, kernel_h, bias, mask, rmask, hs, hd, gates, rh, rec_zr, rec_h, backwards):
        steps, n, three_units = pre.shape
        units = three_units // 3
        for t in range(steps):
            s = _source_step(t, steps, backwards)
            _drop_state(hs, rmask, hd, t)
            np.dot(hd[t], kernel_zr, rec_zr)
            for b in range(n):
                for k in range(2 * units):
                    pre[t, b, k] = (pre[t, b, k] + bias[k]) + rec_zr[b, k]
                _gate_block(pre, gates, t, b, 0, 2 * units, ract, fast)
                for j in range(units):
                    rh[t, b, j] = gates[t, b, units + j] * hd[t, b, j]
            np.dot(rh[t], kernel_h, rec_h)
            for b in range(n):
                for j in range(units):
                    k = 2 * units + j
                    pre[t, b, k] = (pre[t, b, k] + bias[k]) + rec_h[b, j]
                _gate_block(pre, gates, t, b, 2 * units, three_units, act, fast)
                if mask[b, s] != 0.0:
                    for j in range(units):
                        z, hh = gates[t, b, j], gates[t, b, 2 * units + j]
                        hs[t + 1, b, j] = z * hd[t, b, j] + (ONE - z) * hh
                else:
                    for j in range(units):
                        hs[t + 1, b, j] = hs[t, b, j]
    return gru_forward


def gru_forward(pre, kernel_zr, kernel_h, bias, mask, rmask, hs, hd, gates, rh, rec_zr, rec_h, backwards, act, ract,
                fast):
    """pre [T,n,3u]: x @ kernel on entry, the pre-activations on return; kernel_zr [u,2u] and
    kernel_h [u,u] (the recurrent kernel's column blocks); hs [T+1,n,u]; hd, rh [T,n,u]
    (dropped previous state, r * hd); gates [T,n,3u]; rec_zr [n,2u], rec_h [n,u] scratch.
    h = z*hd + (1-z)*act(xh + (r*hd) @ U_h), as TF.js."""
    return _specialised(_gru_forward_for, act, ract, fast)(pre, kernel_zr, kernel_h, bias, mask, rmask, hs, hd, gates, rh, rec_zr, rec_h, backwards)


@njit(inline="always")
def _gru_step_grad_zh(dy_seq, sequences, mask, hd, pre, gates, dh, dzr, dzh, t, s, act, ract):
    """dh += this step's output gradient; dzh = dLoss/d(h block), dzr[:, :u] = dLoss/d(z block)."""
    n, units = dh.shape
    for b in range(n):
        if sequences:
            for j in range(units):
                dh[b, j] += dy_seq[b, t, j]
        if mask[b, s] == 0.0:
            for j in range(units):
                dzh[b, j] = 0.0
                dzr[b, j] = 0.0
            continue
        for j in range(units):
            g_h, z, hh = dh[b, j], gates[t, b, j], gates[t, b, 2 * units + j]
            dzh[b, j] = g_h * (ONE - z) * _dact(pre[t, b, 2 * units + j], hh, act)
            dzr[b, j] = g_h * (hd[t, b, j] - hh) * _dact(pre[t, b, j], z, ract)


@njit(inline="always")
def _gru_step_grad_r(mask, hd, pre, gates, dz, db, dzr, dzh, drh, t, s, ract):
    """dzr[:, u:] = dLoss/d(r block) from drh = dLoss/d(r * hd); dz[t] and db."""
    n, units = dzh.shape
    for b in range(n):
        if mask[b, s] == 0.0:
            for j in range(units):
                dzr[b, units + j] = 0.0
        else:
            for j in range(units):
                r = gates[t, b, units + j]
                dzr[b, units + j] = drh[b, j] * hd[t, b, j] * _dact(pre[t, b, units + j], r, ract)
        for k in range(2 * units):
            dz[t, b, k] = dzr[b, k]
        for j in range(units):
            dz[t, b, 2 * units + j] = dzh[b, j]
        _sum_bias_grad(db, dz, t, b)


def _gru_backward_for(act, ract):
    @njit
    def gru_backward(dy_seq, dy_last, sequences, kernel_zr_t, kernel_h_t, mask, rmask, hd, pre, gates, dz, db, dh,
                        dzr, dzh, dprev_zr, drh, backwards):
        steps, n, three_units = pre.shape
        units = three_units // 3
        _start_grad(dh, dy_last, sequences, db)
        for t in range(steps - 1, -1, -1):
            s = _source_step(t, steps, backwards)
            _gru_step_grad_zh(dy_seq, sequences, mask, hd, pre, gates, dh, dzr, dzh, t, s, act, ract)
            np.dot(dzh, kernel_h_t, drh)  # dLoss/d(r * hd)
            _gru_step_grad_r(mask, hd, pre, gates, dz, db, dzr, dzh, drh, t, s, ract)
            np.dot(dzr, kernel_zr_t, dprev_zr)
            for b in range(n):
                if mask[b, s] == 0.0:
                    continue  # the state passed through: dh stays
                for j in range(units):
                    r, z = gates[t, b, units + j], gates[t, b, j]
                    dh[b, j] = (dh[b, j] * z + drh[b, j] * r + dprev_zr[b, j]) * rmask[b, j]
    return gru_backward


def gru_backward(dy_seq, dy_last, sequences, kernel_zr_t, kernel_h_t, mask, rmask, hd, pre, gates, dz, db, dh, dzr,
                 dzh, dprev_zr, drh, backwards, act, ract):
    """Fills dz [T,n,3u] = dLoss/dpre per step (the h block is also dLoss/d(rh @ U_h)) and
    db [3u]; leaves dh [n,u] for the initial state. Scratch, contiguous because `np.dot` needs
    it: dzr [n,2u] (the z|r block of this step), dzh [n,u] (the h block), dprev_zr [n,u], drh [n,u]."""
    return _specialised(_gru_backward_for, act, ract)(dy_seq, dy_last, sequences, kernel_zr_t, kernel_h_t, mask, rmask, hd, pre, gates, dz, db, dh, dzr, dzh, dprev_zr, drh, backwards)


# -- GRU, reset gate after the recurrent product (Keras reset_after=True, PyTorch's GRU) -------------
@njit(inline="always")
def _gru_reset_after_step(pre, bias, mask, hs, hd, gates, rec_raw, t, s, act, ract, fast):
    n, units = hd.shape[1], hd.shape[2]
    three_units = 3 * units
    for b in range(n):
        for k in range(2 * units):
            pre[t, b, k] = (pre[t, b, k] + bias[k]) + rec_raw[t, b, k]
        _gate_block(pre, gates, t, b, 0, 2 * units, ract, fast)  # z, r
        for j in range(units):
            k = 2 * units + j
            pre[t, b, k] = (pre[t, b, k] + bias[k]) + gates[t, b, units + j] * rec_raw[t, b, k]
        _gate_block(pre, gates, t, b, 2 * units, three_units, act, fast)  # hh
        if mask[b, s] != 0.0:
            for j in range(units):
                z, hh = gates[t, b, j], gates[t, b, 2 * units + j]
                hs[t + 1, b, j] = z * hd[t, b, j] + (ONE - z) * hh
        else:
            for j in range(units):
                hs[t + 1, b, j] = hs[t, b, j]


def _gru_reset_after_forward_for(act, ract, fast):
    @njit
    def gru_reset_after_forward(pre, recurrent_kernel, bias, recurrent_bias, mask, rmask, hs, hd, gates, rec_raw,
                                   rec, backwards):
        steps, n, three_units = pre.shape
        for t in range(steps):
            s = _source_step(t, steps, backwards)
            _drop_state(hs, rmask, hd, t)
            np.dot(hd[t], recurrent_kernel, rec)
            for b in range(n):
                for k in range(three_units):
                    rec_raw[t, b, k] = rec[b, k] + recurrent_bias[k]
            _gru_reset_after_step(pre, bias, mask, hs, hd, gates, rec_raw, t, s, act, ract, fast)
    return gru_reset_after_forward


def gru_reset_after_forward(pre, recurrent_kernel, bias, recurrent_bias, mask, rmask, hs, hd, gates, rec_raw, rec,
                            backwards, act, ract, fast):
    """pre [T,n,3u]: x @ kernel on entry, the pre-activations on return; bias, recurrent_bias
    [3u] (the input and recurrent halves); rec_raw [T,n,3u] keeps hd @ U + b_rec per step (its
    h block feeds the reset gate's gradient); rec [n,3u] scratch.
    h = z*hd + (1-z)*act(xh + r*(hd @ U_h + b_rh))."""
    return _specialised(_gru_reset_after_forward_for, act, ract, fast)(pre, recurrent_kernel, bias, recurrent_bias, mask, rmask, hs, hd, gates, rec_raw, rec, backwards)


@njit(inline="always")
def _gru_reset_after_step_grad(dy_seq, sequences, mask, hd, pre, gates, rec_raw, dz, drec, db, db_rec, dh, t, s, act, ract):
    n, units = dh.shape
    three_units = 3 * units
    for b in range(n):
        if sequences:
            for j in range(units):
                dh[b, j] += dy_seq[b, t, j]
        if mask[b, s] == 0.0:  # the state passed through: dh stays
            for k in range(three_units):
                dz[t, b, k] = 0.0
                drec[t, b, k] = 0.0
            continue
        for j in range(units):
            g_h, z, hh = dh[b, j], gates[t, b, j], gates[t, b, 2 * units + j]
            d_zh = g_h * (ONE - z) * _dact(pre[t, b, 2 * units + j], hh, act)
            dz[t, b, 2 * units + j] = d_zh
            dz[t, b, j] = g_h * (hd[t, b, j] - hh) * _dact(pre[t, b, j], z, ract)
        for j in range(units):
            r, d_zh = gates[t, b, units + j], dz[t, b, 2 * units + j]
            dz[t, b, units + j] = d_zh * rec_raw[t, b, 2 * units + j] * _dact(pre[t, b, units + j], r, ract)
            drec[t, b, 2 * units + j] = d_zh * r
        for k in range(2 * units):
            drec[t, b, k] = dz[t, b, k]
        _sum_bias_grad(db, dz, t, b)
        _sum_bias_grad(db_rec, drec, t, b)


def _gru_reset_after_backward_for(act, ract):
    @njit
    def gru_reset_after_backward(dy_seq, dy_last, sequences, recurrent_kernel_t, mask, rmask, hd, pre, gates,
                                    rec_raw, dz, drec, db, db_rec, dh, dprev, backwards):
        steps, n, three_units = pre.shape
        units = three_units // 3
        _start_grad(dh, dy_last, sequences, db)
        db_rec[:] = 0.0
        for t in range(steps - 1, -1, -1):
            s = _source_step(t, steps, backwards)
            _gru_reset_after_step_grad(dy_seq, sequences, mask, hd, pre, gates, rec_raw, dz, drec, db, db_rec, dh, t, s,
                                       act, ract)
            np.dot(drec[t], recurrent_kernel_t, dprev)
            for b in range(n):
                if mask[b, s] == 0.0:
                    continue
                for j in range(units):
                    dh[b, j] = (dh[b, j] * gates[t, b, j] + dprev[b, j]) * rmask[b, j]

    return gru_reset_after_backward


def gru_reset_after_backward(dy_seq, dy_last, sequences, recurrent_kernel_t, mask, rmask, hd, pre, gates, rec_raw,
                             dz, drec, db, db_rec, dh, dprev, backwards, act, ract):
    """Fills dz [T,n,3u] = dLoss/d(x@W + b) and drec [T,n,3u] = dLoss/d(hd @ U + b_rec) per
    step, and their sums db, db_rec [3u]; leaves dh [n,u] for the initial state. dprev [n,u]
    scratch."""
    return _specialised(_gru_reset_after_backward_for, act, ract)(dy_seq, dy_last, sequences, recurrent_kernel_t, mask, rmask, hd, pre, gates, rec_raw, dz, drec, db, db_rec, dh, dprev, backwards)