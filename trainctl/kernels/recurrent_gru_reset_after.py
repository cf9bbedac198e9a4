"""The GRU time loops with the reset gate after the recurrent product (Keras reset_after=True,
PyTorch); conventions in kernels/recurrent.py."""

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
        _gru_state(hs, hd, gates, mask, t, b, s, units)


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
