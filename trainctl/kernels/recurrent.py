"""The time loops of the recurrent layers: SimpleRNN, LSTM and GRU (both reset conventions).

One compiled function per cell kind and direction of the computation (forward, and
backpropagation through time). The input projection for every step, `x @ kernel + bias`,
is one matmul done by the caller before the loop (`xw`, [n, steps, gates*units]); inside
the loop each step needs one product with the recurrent kernel (two for reset-before GRU),
done with `np.dot` into a preallocated row of a buffer, and the gates are fused element-wise.
The weight gradients of the recurrent kernel are one matmul after the loop over the stacked
per-step states (`dU = H^T @ dZ`), again by the caller.

Conventions (TF.js tfjs-layers/src/layers/recurrent.ts):
- time-major buffers indexed by processing step t; `s = steps-1-t` when going backwards;
- per-step outputs are stacked in processing order (a backwards layer returns the reversed
  sequence, as TF.js does);
- `mask[b, s] == 0` makes the step keep the previous state and output it again;
- `rmask` is the recurrent-dropout mask [n, units] (ones when off), applied to the previous
  state where it enters the recurrent product (and, for GRU, where TF.js uses it in the carry);
- gate order: LSTM i, f, c, o; GRU z, r, h (TF.js and Keras).
Activations are element-wise codes from `trainctl.kernels.codes`; scalars are computed in
float64 and rounded once when stored, as in the other kernels.
"""

from __future__ import annotations

import numpy as np

from trainctl.kernels.activations import _derivative, _forward
from trainctl.kernels.codes import SIGMOID, TANH
from trainctl.kernels.jit import njit

# tanh as a rational polynomial (Eigen's / XLA's float32 form: clamp at +-7.905, then a
# degree-13/6 odd rational): max abs error 2.4e-7 on float32 inputs, and it vectorises,
# where a libm call per element does not — measured 2.9 ms vs 42 ms over 409,600 gate values
# (bench/rnn_speed.py's LSTM forward at batch 32). Used for float32 only; float64 (the
# gradient checks) keeps the exact functions. Derivatives are taken from the stored outputs
# (1 - y^2, y(1 - y)) as TF.js's gradients are.
_TANH_CLAMP = 7.90531110763549805


@njit(inline="always")
def _tanh_fast(x):
    x = min(max(x, -_TANH_CLAMP), _TANH_CLAMP)
    x2 = x * x
    p = x2 * -2.76076847742355e-16 + 2.00018790482477e-13
    p = x2 * p + -8.60467152213735e-11
    p = x2 * p + 5.12229709037114e-08
    p = x2 * p + 1.48572235717979e-05
    p = x2 * p + 6.37261928875436e-04
    p = x2 * p + 4.89352455891786e-03
    q = x2 * 1.19825839466702e-06 + 1.18534705686654e-04
    q = x2 * q + 2.26843463243900e-03
    q = x2 * q + 4.89352518554385e-03
    return x * p / q


@njit(inline="always")
def _act(x, code, fast):
    """act(x); `fast` (float32 buffers) takes the vectorising forms of tanh and sigmoid."""
    if fast:
        if code == TANH:
            return _tanh_fast(x)
        if code == SIGMOID:
            return 0.5 * _tanh_fast(0.5 * x) + 0.5
    return _forward(x, code)


@njit(inline="always")
def _dact(x, y, code):
    """d act / dx from the output for the gate activations (branch-free, so loops vectorise),
    the general table for the rest."""
    if code == TANH:
        return 1.0 - y * y
    if code == SIGMOID:
        return y * (1.0 - y)
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
            gates[t, b, k] = 0.5 * _tanh_fast(0.5 * pre[t, b, k]) + 0.5
    else:
        for k in range(start, stop):
            gates[t, b, k] = _act(pre[t, b, k], code, fast)


@njit
def _source_step(t, steps, backwards):
    return steps - 1 - t if backwards else t


# -- SimpleRNN: h = act(xw + (h_prev*rmask) @ U) ---------------------------------------------------
@njit
def simple_rnn_forward(xw, recurrent_kernel, mask, rmask, hs, hd, pre, rec, backwards, act, fast):
    """xw [n,T,u]; hs [T+1,n,u] with hs[0] the initial state (filled here from t=1);
    hd [T,n,u] the dropped previous states; pre [T,n,u] pre-activations; rec [n,u] scratch."""
    n, steps, units = xw.shape
    for t in range(steps):
        s = _source_step(t, steps, backwards)
        for b in range(n):
            for j in range(units):
                hd[t, b, j] = hs[t, b, j] * rmask[b, j]
        np.dot(hd[t], recurrent_kernel, rec)
        for b in range(n):
            keep = mask[b, s] != 0.0
            for j in range(units):
                z = xw[b, s, j] + rec[b, j]
                pre[t, b, j] = z
                hs[t + 1, b, j] = _act(z, act, fast) if keep else hs[t, b, j]


@njit
def simple_rnn_backward(dy_seq, dy_last, sequences, recurrent_kernel_t, mask, rmask, hs, pre, dz, dh, dprev, backwards, act):
    """dy_seq [n,T,u] (when `sequences`) or dy_last [n,u] (the last output; the other one is
    an empty placeholder, as numba types both); fills dz [T,n,u] = dLoss/dpre per step
    (zero on masked steps) and leaves dh [n,u] = dLoss/d(initial state). dprev [n,u] scratch."""
    steps, n, units = pre.shape
    for b in range(n):
        for j in range(units):
            dh[b, j] = 0.0 if sequences else dy_last[b, j]
    for t in range(steps - 1, -1, -1):
        s = _source_step(t, steps, backwards)
        for b in range(n):
            keep = mask[b, s] != 0.0
            for j in range(units):
                g = dh[b, j] + (dy_seq[b, t, j] if sequences else 0.0)
                dh[b, j] = g
                dz[t, b, j] = g * _dact(pre[t, b, j], hs[t + 1, b, j], act) if keep else 0.0
        np.dot(dz[t], recurrent_kernel_t, dprev)
        for b in range(n):
            if mask[b, s] != 0.0:
                for j in range(units):
                    dh[b, j] = dprev[b, j] * rmask[b, j]
            # a masked step passed its state through: dh stays


# -- LSTM ------------------------------------------------------------------------------------------
@njit
def lstm_forward(xw, recurrent_kernel, mask, rmask, hs, cs, hd, pre, gates, act_c, rec, backwards, act, ract, fast):
    """xw [n,T,4u]; hs, cs [T+1,n,u] (index 0: initial states); hd [T,n,u]; pre, gates [T,n,4u]
    (pre-activations and activated i, f, c~, o); act_c [T,n,u] = act(c); rec [n,4u] scratch."""
    n, steps, four_units = xw.shape
    units = four_units // 4
    for t in range(steps):
        s = _source_step(t, steps, backwards)
        for b in range(n):
            for j in range(units):
                hd[t, b, j] = hs[t, b, j] * rmask[b, j]
        np.dot(hd[t], recurrent_kernel, rec)
        for b in range(n):
            # branch-free inner loops over units, so LLVM vectorises them
            for k in range(four_units):
                pre[t, b, k] = xw[b, s, k] + rec[b, k]
            _gate_block(pre, gates, t, b, 0, 2 * units, ract, fast)  # i, f
            _gate_block(pre, gates, t, b, 2 * units, 3 * units, act, fast)  # c~
            _gate_block(pre, gates, t, b, 3 * units, four_units, ract, fast)  # o
            if mask[b, s] != 0.0:
                # c in the buffers' precision, then act(c): the rounding TF.js's float32 ops give
                for j in range(units):
                    cs[t + 1, b, j] = gates[t, b, units + j] * cs[t, b, j] + gates[t, b, j] * gates[t, b, 2 * units + j]
                if fast and act == TANH:
                    for j in range(units):
                        act_c[t, b, j] = _tanh_fast(cs[t + 1, b, j])
                else:
                    for j in range(units):
                        act_c[t, b, j] = _act(cs[t + 1, b, j], act, fast)
                for j in range(units):
                    hs[t + 1, b, j] = gates[t, b, 3 * units + j] * act_c[t, b, j]
            else:  # a masked step keeps the state
                for j in range(units):
                    cs[t + 1, b, j] = cs[t, b, j]
                    act_c[t, b, j] = 0.0
                    hs[t + 1, b, j] = hs[t, b, j]


@njit
def lstm_backward(dy_seq, dy_last, sequences, recurrent_kernel_t, mask, rmask, cs, pre, gates, act_c, dz, dh, dc, dprev,
                  backwards, act, ract):
    """Fills dz [T,n,4u] = dLoss/dpre per step; leaves dh, dc [n,u] for the initial states."""
    steps, n, four_units = pre.shape
    units = four_units // 4
    for b in range(n):
        for j in range(units):
            dh[b, j] = 0.0 if sequences else dy_last[b, j]
            dc[b, j] = 0.0
    for t in range(steps - 1, -1, -1):
        s = _source_step(t, steps, backwards)
        for b in range(n):
            if sequences:
                for j in range(units):
                    dh[b, j] += dy_seq[b, t, j]
            if mask[b, s] == 0.0:  # the step passed its states through: dh, dc stay
                for k in range(four_units):
                    dz[t, b, k] = 0.0
                continue
            if act == TANH and ract == SIGMOID:  # Keras's defaults, written out so the loop vectorises
                for j in range(units):
                    g_h = dh[b, j]
                    gi, gf = gates[t, b, j], gates[t, b, units + j]
                    gc, go = gates[t, b, 2 * units + j], gates[t, b, 3 * units + j]
                    ac = act_c[t, b, j]
                    g_c = dc[b, j] + g_h * go * (1.0 - ac * ac)
                    dz[t, b, j] = g_c * gc * gi * (1.0 - gi)
                    dz[t, b, units + j] = g_c * cs[t, b, j] * gf * (1.0 - gf)
                    dz[t, b, 2 * units + j] = g_c * gi * (1.0 - gc * gc)
                    dz[t, b, 3 * units + j] = g_h * ac * go * (1.0 - go)
                    dc[b, j] = g_c * gf
                continue
            for j in range(units):
                g_h = dh[b, j]
                gi, gf = gates[t, b, j], gates[t, b, units + j]
                gc, go = gates[t, b, 2 * units + j], gates[t, b, 3 * units + j]
                ac = act_c[t, b, j]
                g_c = dc[b, j] + g_h * go * _dact(cs[t + 1, b, j], ac, act)
                dz[t, b, j] = g_c * gc * _dact(pre[t, b, j], gi, ract)
                dz[t, b, units + j] = g_c * cs[t, b, j] * _dact(pre[t, b, units + j], gf, ract)
                dz[t, b, 2 * units + j] = g_c * gi * _dact(pre[t, b, 2 * units + j], gc, act)
                dz[t, b, 3 * units + j] = g_h * ac * _dact(pre[t, b, 3 * units + j], go, ract)
                dc[b, j] = g_c * gf
        np.dot(dz[t], recurrent_kernel_t, dprev)
        for b in range(n):
            if mask[b, s] != 0.0:
                for j in range(units):
                    dh[b, j] = dprev[b, j] * rmask[b, j]


# -- GRU, reset gate before the recurrent product (TF.js; Keras reset_after=False) ------------------
@njit
def gru_forward(xw, kernel_zr, kernel_h, mask, rmask, hs, hd, pre, gates, rh, rec_zr, rec_h, backwards, act, ract, fast):
    """xw [n,T,3u]; kernel_zr [u,2u] and kernel_h [u,u] (the recurrent kernel's column blocks);
    hs [T+1,n,u]; hd, rh [T,n,u] (dropped previous state, r * hd); pre, gates [T,n,3u];
    rec_zr [n,2u], rec_h [n,u] scratch. h = z*hd + (1-z)*act(xh + (r*hd) @ U_h), as TF.js."""
    n, steps, three_units = xw.shape
    units = three_units // 3
    for t in range(steps):
        s = _source_step(t, steps, backwards)
        for b in range(n):
            for j in range(units):
                hd[t, b, j] = hs[t, b, j] * rmask[b, j]
        np.dot(hd[t], kernel_zr, rec_zr)
        for b in range(n):
            for j in range(units):
                zz = xw[b, s, j] + rec_zr[b, j]
                zr = xw[b, s, units + j] + rec_zr[b, units + j]
                pre[t, b, j], pre[t, b, units + j] = zz, zr
                gates[t, b, j], gates[t, b, units + j] = _act(zz, ract, fast), _act(zr, ract, fast)
                rh[t, b, j] = gates[t, b, units + j] * hd[t, b, j]
        np.dot(rh[t], kernel_h, rec_h)
        for b in range(n):
            keep = mask[b, s] != 0.0
            for j in range(units):
                zh = xw[b, s, 2 * units + j] + rec_h[b, j]
                pre[t, b, 2 * units + j] = zh
                gates[t, b, 2 * units + j] = _act(zh, act, fast)
                z, hh = gates[t, b, j], gates[t, b, 2 * units + j]
                hs[t + 1, b, j] = (z * hd[t, b, j] + (1.0 - z) * hh) if keep else hs[t, b, j]


@njit
def gru_backward(dy_seq, dy_last, sequences, kernel_zr_t, kernel_h_t, mask, rmask, hd, pre, gates, dz, dh, dzr, dzh, dprev_zr, drh,
                 backwards, act, ract):
    """Fills dz [T,n,3u] = dLoss/dpre per step (the h block is also dLoss/d(rh @ U_h));
    leaves dh [n,u] for the initial state. Scratch, contiguous because `np.dot` needs it:
    dzr [n,2u] (the z|r block of this step), dzh [n,u] (the h block), dprev_zr [n,u], drh [n,u]."""
    steps, n, three_units = pre.shape
    units = three_units // 3
    for b in range(n):
        for j in range(units):
            dh[b, j] = 0.0 if sequences else dy_last[b, j]
    for t in range(steps - 1, -1, -1):
        s = _source_step(t, steps, backwards)
        for b in range(n):
            keep = mask[b, s] != 0.0
            for j in range(units):
                g_h = dh[b, j] + (dy_seq[b, t, j] if sequences else 0.0)
                dh[b, j] = g_h
                if not keep:
                    dzh[b, j] = 0.0
                    dzr[b, j] = 0.0
                    continue
                z, hh = gates[t, b, j], gates[t, b, 2 * units + j]
                dzh[b, j] = g_h * (1.0 - z) * _dact(pre[t, b, 2 * units + j], hh, act)
                dzr[b, j] = g_h * (hd[t, b, j] - hh) * _dact(pre[t, b, j], z, ract)
        np.dot(dzh, kernel_h_t, drh)  # dLoss/d(r * hd)
        for b in range(n):
            keep = mask[b, s] != 0.0
            for j in range(units):
                r = gates[t, b, units + j]
                dzr[b, units + j] = drh[b, j] * hd[t, b, j] * _dact(pre[t, b, units + j], r, ract) if keep else 0.0
                dz[t, b, j], dz[t, b, units + j], dz[t, b, 2 * units + j] = dzr[b, j], dzr[b, units + j], dzh[b, j]
        np.dot(dzr, kernel_zr_t, dprev_zr)
        for b in range(n):
            if mask[b, s] == 0.0:
                continue  # the state passed through: dh stays
            for j in range(units):
                r, z = gates[t, b, units + j], gates[t, b, j]
                dh[b, j] = (dh[b, j] * z + drh[b, j] * r + dprev_zr[b, j]) * rmask[b, j]


# -- GRU, reset gate after the recurrent product (Keras reset_after=True, PyTorch's GRU) -------------
@njit
def gru_reset_after_forward(xw, recurrent_kernel, recurrent_bias, mask, rmask, hs, hd, pre, gates, rec_raw, rec,
                            backwards, act, ract, fast):
    """xw [n,T,3u] (input bias included); recurrent_kernel [u,3u]; recurrent_bias [3u];
    rec_raw [T,n,3u] keeps hd @ U + b_rec per step (its h block feeds the reset gate's
    gradient); rec [n,3u] scratch. h = z*hd + (1-z)*act(xh + r*(hd @ U_h + b_rh))."""
    n, steps, three_units = xw.shape
    units = three_units // 3
    for t in range(steps):
        s = _source_step(t, steps, backwards)
        for b in range(n):
            for j in range(units):
                hd[t, b, j] = hs[t, b, j] * rmask[b, j]
        np.dot(hd[t], recurrent_kernel, rec)
        for b in range(n):
            keep = mask[b, s] != 0.0
            for k in range(three_units):
                rec_raw[t, b, k] = rec[b, k] + recurrent_bias[k]
            for j in range(units):
                zz = xw[b, s, j] + rec_raw[t, b, j]
                zr = xw[b, s, units + j] + rec_raw[t, b, units + j]
                z, r = _act(zz, ract, fast), _act(zr, ract, fast)
                zh = xw[b, s, 2 * units + j] + r * rec_raw[t, b, 2 * units + j]
                hh = _act(zh, act, fast)
                pre[t, b, j], pre[t, b, units + j], pre[t, b, 2 * units + j] = zz, zr, zh
                gates[t, b, j], gates[t, b, units + j], gates[t, b, 2 * units + j] = z, r, hh
                hs[t + 1, b, j] = (z * hd[t, b, j] + (1.0 - z) * hh) if keep else hs[t, b, j]


@njit
def gru_reset_after_backward(dy_seq, dy_last, sequences, recurrent_kernel_t, mask, rmask, hd, pre, gates, rec_raw, dz, drec,
                             dh, dprev, backwards, act, ract):
    """Fills dz [T,n,3u] = dLoss/d(xw) and drec [T,n,3u] = dLoss/d(hd @ U + b_rec) per step;
    leaves dh [n,u] for the initial state. dprev [n,u] scratch."""
    steps, n, three_units = pre.shape
    units = three_units // 3
    for b in range(n):
        for j in range(units):
            dh[b, j] = 0.0 if sequences else dy_last[b, j]
    for t in range(steps - 1, -1, -1):
        s = _source_step(t, steps, backwards)
        for b in range(n):
            keep = mask[b, s] != 0.0
            for j in range(units):
                g_h = dh[b, j] + (dy_seq[b, t, j] if sequences else 0.0)
                dh[b, j] = g_h
                if not keep:
                    for k in range(3):
                        dz[t, b, k * units + j] = 0.0
                        drec[t, b, k * units + j] = 0.0
                    continue
                z, r, hh = gates[t, b, j], gates[t, b, units + j], gates[t, b, 2 * units + j]
                d_zh = g_h * (1.0 - z) * _dact(pre[t, b, 2 * units + j], hh, act)
                d_zz = g_h * (hd[t, b, j] - hh) * _dact(pre[t, b, j], z, ract)
                d_zr = d_zh * rec_raw[t, b, 2 * units + j] * _dact(pre[t, b, units + j], r, ract)
                dz[t, b, j], dz[t, b, units + j], dz[t, b, 2 * units + j] = d_zz, d_zr, d_zh
                drec[t, b, j], drec[t, b, units + j], drec[t, b, 2 * units + j] = d_zz, d_zr, d_zh * r
        np.dot(drec[t], recurrent_kernel_t, dprev)
        for b in range(n):
            if mask[b, s] == 0.0:
                continue
            for j in range(units):
                dh[b, j] = (dh[b, j] * gates[t, b, j] + dprev[b, j]) * rmask[b, j]
