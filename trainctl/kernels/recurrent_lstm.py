"""The LSTM time loops (gates i, f, c, o); conventions in kernels/recurrent.py."""

from __future__ import annotations

import numpy as np

from trainctl.jit import njit
from trainctl.kernels.recurrent_gates import (
    _act,
    _add_input,
    _carry_grad,
    _dact,
    _drop_state,
    _gate_block,
    _source_step,
    _specialised,
    _start_grad,
    _sum_bias_grad,
)


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
