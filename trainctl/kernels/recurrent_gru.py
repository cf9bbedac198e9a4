"""The GRU time loops (gates z, r, h), reset gate before the recurrent product (TF.js); the
other convention is in recurrent_gru_reset_after.py; conventions in kernels/recurrent.py."""

from __future__ import annotations

import numpy as np

from trainctl.jit import njit
from trainctl.kernels.recurrent_gates import (
    ONE,
    _dact,
    _drop_state,
    _gate_block,
    _gru_state,
    _source_step,
    _specialised,
    _start_grad,
    _sum_bias_grad,
)


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
                _gru_state(hs, hd, gates, mask, t, b, s, units)
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
