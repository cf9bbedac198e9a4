"""One recurrent layer's (and Embedding's) whole training forward and backward as the compiled
loop runs them (kernels/plan_layers.py KIND_RECURRENT, KIND_EMBEDDING), with the matrix
products the recurrent layers' Python path (nn/layers/recurrent.py) calls too (kernels/
blas.matmul), so the two paths run the same instructions, as kernels/conv_steps.py does for
convolutions.

A recurrent layer's buffers are a block of consecutive entries of the loop's flat buffer list,
in the order of BLOCK (the names of nn/layers/recurrent.py RecurrentPlan.buffers; an entry a
cell does not have is empty), and its geometry a row of ints (the R_* columns). The time
loops called are the very kernels the Python path calls (kernels/recurrent*.py, compiled
for the activation pair as constants), through kernels/recurrent_calls.py: the defaults'
(tanh with hard_sigmoid gates, float32 fast forms for float32 buffers) linked in, so the loop
compiles no second copy of a time loop and its own body only grows by a call; any other
pair's at the address its row carries (R_FORWARD_AT, R_BACKWARD_AT), so the loop compiles
once for every pair. Dropout masks come from the chunk's draws, a Masking layer's mask from
its row of the plan (recurrent_forward), a stateful layer's initial states from its carried
ones (BLOCK).
"""

from __future__ import annotations

import numpy as np

from trainctl.jit import njit
from trainctl.kernels.blas import matmul
from trainctl.kernels.layers import dropout_forward
from trainctl.kernels.recurrent import _simple_rnn_backward_for, _simple_rnn_forward_for
from trainctl.kernels.recurrent_calls import address, time_loop
from trainctl.kernels.recurrent_gru import _gru_backward_for, _gru_forward_for
from trainctl.kernels.recurrent_gru_reset_after import (
    _gru_reset_after_backward_for,
    _gru_reset_after_forward_for,
)
from trainctl.kernels.recurrent_lstm import _lstm_backward_for, _lstm_forward_for
from trainctl.kernels.resampling import embedding_backward, embedding_forward

CELL_SIMPLE, CELL_LSTM, CELL_GRU, CELL_GRU_RESET_AFTER = 0, 1, 2, 3
# geometry columns of a recurrent layer's row
R_CELL, R_STEPS, R_FEATURES, R_UNITS, R_SEQUENCES, R_BACKWARDS, R_BLOCK = 0, 1, 2, 3, 4, 5, 6
R_MASK = 7  # the bufs index of the time-step mask [n, steps] (a Masking layer's, Embedding mask_zero's), or -1
R_FORWARD_AT, R_BACKWARD_AT = 8, 9  # the time loops' addresses for a non-default activation pair, else 0
N_R = 10
BLOCK = ("x_tm", "pre", "hd", "dz", "dx_tm", "h", "c", "mask", "rmask", "kernel", "kernel_grad",
         "recurrent_kernel", "recurrent_kernel_grad", "bias", "bias_grad", "kernel_t", "dh", "dc", "dprev",
         "y", "dx", "rec", "gates", "act_c", "rh", "rec_raw", "drec", "kernel_zr", "kernel_h", "kernel_zr_t",
         "kernel_h_t", "rec_h", "dzr", "dzh", "drh", "input_scale", "ones", "carry_h", "carry_c", "carried", "empty")
(B_X_TM, B_PRE, B_HD, B_DZ, B_DX_TM, B_H, B_C, B_MASK, B_RMASK, B_KERNEL, B_KERNEL_GRAD, B_RK, B_RK_GRAD, B_BIAS,
 B_BIAS_GRAD, B_KERNEL_T, B_DH, B_DC, B_DPREV, B_Y, B_DX, B_REC, B_GATES, B_ACT_C, B_RH, B_REC_RAW, B_DREC,
 B_KERNEL_ZR, B_KERNEL_H, B_KERNEL_ZR_T, B_KERNEL_H_T, B_REC_H, B_DZR, B_DZH, B_DRH, B_SCALE, B_ONES,
 B_CARRY_H, B_CARRY_C, B_CARRIED, B_EMPTY) = range(len(BLOCK))
# A stateful layer's block holds its carried states (carry_h; carry_c for an LSTM) and `carried`
# [1]: 1.0 once they hold a batch's final states; a layer that is not stateful has it empty.
GATES = {CELL_SIMPLE: 1, CELL_LSTM: 4, CELL_GRU: 3, CELL_GRU_RESET_AFTER: 3}


# -- the time loops: the default pair's linked in, another pair's at the R_*_AT address ----------
_simple_forward = time_loop(_simple_rnn_forward_for)
_simple_backward = time_loop(_simple_rnn_backward_for)
_lstm_forward = time_loop(_lstm_forward_for)
_lstm_backward = time_loop(_lstm_backward_for)
_gru_forward = time_loop(_gru_forward_for)
_gru_backward = time_loop(_gru_backward_for)
_gru_ra_forward = time_loop(_gru_reset_after_forward_for)
_gru_ra_backward = time_loop(_gru_reset_after_backward_for)
TIME_LOOPS = {CELL_SIMPLE: (_simple_rnn_forward_for, _simple_rnn_backward_for),
               CELL_LSTM: (_lstm_forward_for, _lstm_backward_for),
               CELL_GRU: (_gru_forward_for, _gru_backward_for),
               CELL_GRU_RESET_AFTER: (_gru_reset_after_forward_for, _gru_reset_after_backward_for)}


def time_loop_addresses(cell: int, activation: int, recurrent_activation: int, dtype) -> tuple[int, int]:
    """The R_FORWARD_AT and R_BACKWARD_AT columns of a layer of this cell and activation codes:
    0 for the default pair (its time loops are linked into the loop), else the addresses of the
    pair's (recurrent_calls.address), valid in this process only."""
    return tuple(address(make, activation, recurrent_activation, dtype) for make in TIME_LOOPS[cell])


@njit(inline="always")
def _tm(bufs, base, which, lead, n, width):
    """The block's buffer `which` as the [lead, n, width] view TimeMajor[n] gives in Python."""
    return bufs[base + which][:lead * n * width].reshape(lead, n, width)


@njit(inline="always")
def _rows(bufs, base, which, n, width):
    return bufs[base + which][:n * width].reshape(n, width)


@njit(inline="always")
def _relayout(batch_major, time_major, scale, scaled, backwards, to_batch):
    """[n, steps, f] ↔ time-major [steps, n, f] in processing order (Recurrent.forward's copy
    of x, backward's of dx), times the input mask `scale` [n, f] element by element when
    `scaled` (as np.multiply); to_batch: time_major into batch_major, else the other way."""
    steps, n, width = time_major.shape
    for t in range(steps):
        s = steps - 1 - t if backwards else t
        if not scaled:
            if to_batch:
                batch_major[:, s, :] = time_major[t]
            else:
                time_major[t] = batch_major[:, s, :]
            continue
        for i in range(n):
            for j in range(width):
                if to_batch:
                    batch_major[i, s, j] = time_major[t, i, j] * scale[i, j]
                else:
                    time_major[t, i, j] = batch_major[i, s, j] * scale[i, j]


@njit
def _draw_mask(bufs, base, which, n, width, uniforms, at, rate):
    """Recurrent._draw_mask: a TF.js dropout mask (0 or 1/(1-rate)) from the next n * width
    uniforms into the block's buffer `which`."""
    mask = bufs[base + which][:n * width]
    dropout_forward(bufs[base + B_ONES][:n * width], uniforms[at:at + n * width], rate, mask, mask)
    return mask.reshape(n, width)


@njit
def recurrent_forward(count, r, x, bufs, rates, uniforms, at):
    """Recurrent.forward(x, training) without carried state: x [count, steps, features] flat;
    the output into the block's y; the time-step mask from bufs[r[R_MASK]] when set. rates =
    (dropout, recurrent_dropout): a rate > 0 draws its mask from uniforms[at:] (the layer's
    uniforms of the chunk, inputs' then the state's, as the layer draws them). Returns `at`
    after the uniforms used."""
    cell, steps, features, units = r[R_CELL], r[R_STEPS], r[R_FEATURES], r[R_UNITS]
    backwards, base = r[R_BACKWARDS] == 1, r[R_BLOCK]
    n, width = count, GATES_BY_CELL[cell] * units
    x3 = x.reshape(n, steps, features)
    x_tm = _tm(bufs, base, B_X_TM, steps, n, features)
    if rates[0] > 0:
        _draw_mask(bufs, base, B_SCALE, n, features, uniforms, at, rates[0])
        at += n * features
    _relayout(x3, x_tm, _rows(bufs, base, B_SCALE, n, features), rates[0] > 0, backwards, False)
    pre = _tm(bufs, base, B_PRE, steps, n, width)
    matmul(x_tm.reshape(steps * n, features), _rows(bufs, base, B_KERNEL, features, width),
           pre.reshape(steps * n, width), False, False)
    rmask, mask = _rows(bufs, base, B_RMASK, n, units), _rows(bufs, base, B_MASK, n, steps)
    if rates[1] > 0:
        _draw_mask(bufs, base, B_RMASK, n, units, uniforms, at, rates[1])
        at += n * units
    else:
        rmask[:] = 1.0
    if r[R_MASK] >= 0:  # the layer's input_mask, as 1.0 / 0.0
        mask[:] = bufs[r[R_MASK]][:n * steps].reshape(n, steps)
    else:
        mask[:] = 1.0
    h = _tm(bufs, base, B_H, steps + 1, n, units)
    carried = bufs[base + B_CARRIED]
    stateful = carried.shape[0] > 0
    resumed = stateful and carried[0] != 0.0  # Recurrent.forward: from the last batch's final states
    if resumed:
        h[0] = _rows(bufs, base, B_CARRY_H, n, units)
    else:
        h[0] = 0.0
    recurrent_kernel, bias = _rows(bufs, base, B_RK, units, width), bufs[base + B_BIAS]
    hd = _tm(bufs, base, B_HD, steps, n, units)
    entry = r[R_FORWARD_AT]
    if cell == CELL_SIMPLE:
        _simple_forward(entry, (pre, recurrent_kernel, bias, mask, rmask, h, hd, _rows(bufs, base, B_REC, n, width),
                             backwards))
    elif cell == CELL_LSTM:
        c = _tm(bufs, base, B_C, steps + 1, n, units)
        if resumed:
            c[0] = _rows(bufs, base, B_CARRY_C, n, units)
        else:
            c[0] = 0.0
        _lstm_forward(entry, (pre, recurrent_kernel, bias, mask, rmask, h, c, hd,
                              _tm(bufs, base, B_GATES, steps, n, width), _tm(bufs, base, B_ACT_C, steps, n, units),
                              _rows(bufs, base, B_REC, n, width), backwards))
    elif cell == CELL_GRU:
        kernel_zr, kernel_h = _rows(bufs, base, B_KERNEL_ZR, units, 2 * units), _rows(bufs, base, B_KERNEL_H, units, units)
        kernel_zr[:] = recurrent_kernel[:, :2 * units]
        kernel_h[:] = recurrent_kernel[:, 2 * units:]
        _gru_forward(entry, (pre, kernel_zr, kernel_h, bias, mask, rmask, h, hd,
                             _tm(bufs, base, B_GATES, steps, n, width), _tm(bufs, base, B_RH, steps, n, units),
                             _rows(bufs, base, B_REC, n, 2 * units), _rows(bufs, base, B_REC_H, n, units), backwards))
    else:
        _gru_ra_forward(entry, (pre, recurrent_kernel, bias[:width], bias[width:], mask, rmask, h, hd,
                             _tm(bufs, base, B_GATES, steps, n, width), _tm(bufs, base, B_REC_RAW, steps, n, width),
                             _rows(bufs, base, B_REC, n, width), backwards))
    if stateful:  # carried into the next batch (the first n rows, as Python carries a partial batch's)
        _rows(bufs, base, B_CARRY_H, n, units)[:] = h[steps]
        if cell == CELL_LSTM:
            _rows(bufs, base, B_CARRY_C, n, units)[:] = _tm(bufs, base, B_C, steps + 1, n, units)[steps]
        carried[0] = 1.0
    if r[R_SEQUENCES] == 1:
        y3 = bufs[base + B_Y][:n * steps * units].reshape(n, steps, units)
        for t in range(steps):
            y3[:, t, :] = h[t + 1]
    else:
        _rows(bufs, base, B_Y, n, units)[:] = h[steps]
    return at


@njit
def recurrent_backward(count, r, dy, need_dx, bufs, rates):
    """Recurrent.backward(dy, need_dx) after recurrent_forward: the weights' gradients, and
    (need_dx) dx [count, steps, features] into the block's dx (through the input mask when
    rates[0] > 0)."""
    cell, steps, features, units = r[R_CELL], r[R_STEPS], r[R_FEATURES], r[R_UNITS]
    backwards, sequences, base = r[R_BACKWARDS] == 1, r[R_SEQUENCES] == 1, r[R_BLOCK]
    n, width = count, GATES_BY_CELL[cell] * units
    recurrent_kernel = _rows(bufs, base, B_RK, units, width)
    kernel_t = _rows(bufs, base, B_KERNEL_T, width, units)
    kernel_t[:] = recurrent_kernel.T
    empty = bufs[base + B_EMPTY][:0]
    if sequences:
        dy_seq, dy_last = dy.reshape(n, steps, units), empty.reshape(0, 0)
    else:
        dy_seq, dy_last = empty.reshape(0, 0, 0), dy.reshape(n, units)
    mask, rmask = _rows(bufs, base, B_MASK, n, steps), _rows(bufs, base, B_RMASK, n, units)
    pre, dz = _tm(bufs, base, B_PRE, steps, n, width), _tm(bufs, base, B_DZ, steps, n, width)
    hd = _tm(bufs, base, B_HD, steps, n, units)
    db, dh, dprev = bufs[base + B_BIAS_GRAD], _rows(bufs, base, B_DH, n, units), _rows(bufs, base, B_DPREV, n, units)
    rk_grad = _rows(bufs, base, B_RK_GRAD, units, width)
    entry = r[R_BACKWARD_AT]
    hd_rows = hd.reshape(steps * n, units)
    dz_rows = dz.reshape(steps * n, width)
    if cell == CELL_SIMPLE:
        _simple_backward(entry, (dy_seq, dy_last, sequences, kernel_t, mask, rmask,
                              _tm(bufs, base, B_H, steps + 1, n, units), pre, dz, db, dh, dprev, backwards))
        matmul(hd_rows, dz_rows, rk_grad, True, False)
    elif cell == CELL_LSTM:
        gates = _tm(bufs, base, B_GATES, steps, n, width)  # the gated cells' only (SimpleRNN has none)
        _lstm_backward(entry, (dy_seq, dy_last, sequences, kernel_t, mask, rmask,
                            _tm(bufs, base, B_C, steps + 1, n, units), pre, gates,
                            _tm(bufs, base, B_ACT_C, steps, n, units), dz, db, dh, _rows(bufs, base, B_DC, n, units),
                            dprev, backwards))
        matmul(hd_rows, dz_rows, rk_grad, True, False)
    elif cell == CELL_GRU:
        gates = _tm(bufs, base, B_GATES, steps, n, width)
        kernel_zr_t = _rows(bufs, base, B_KERNEL_ZR_T, 2 * units, units)
        kernel_h_t = _rows(bufs, base, B_KERNEL_H_T, units, units)
        kernel_zr_t[:] = _rows(bufs, base, B_KERNEL_ZR, units, 2 * units).T
        kernel_h_t[:] = _rows(bufs, base, B_KERNEL_H, units, units).T
        _gru_backward(entry, (dy_seq, dy_last, sequences, kernel_zr_t, kernel_h_t, mask, rmask, hd, pre, gates, dz, db,
                           dh, _rows(bufs, base, B_DZR, n, 2 * units), _rows(bufs, base, B_DZH, n, units), dprev,
                           _rows(bufs, base, B_DRH, n, units), backwards))
        rh_rows = _tm(bufs, base, B_RH, steps, n, units).reshape(steps * n, units)
        matmul(hd_rows, dz_rows[:, :2 * units], rk_grad[:, :2 * units], True, False)
        matmul(rh_rows, dz_rows[:, 2 * units:], rk_grad[:, 2 * units:], True, False)
    else:
        gates = _tm(bufs, base, B_GATES, steps, n, width)
        drec = _tm(bufs, base, B_DREC, steps, n, width)
        _gru_ra_backward(entry, (dy_seq, dy_last, sequences, kernel_t, mask, rmask, hd, pre, gates,
                              _tm(bufs, base, B_REC_RAW, steps, n, width), dz, drec, db[:width], db[width:], dh, dprev,
                              backwards))
        matmul(hd_rows, drec.reshape(steps * n, width), rk_grad, True, False)
    x_rows = _tm(bufs, base, B_X_TM, steps, n, features).reshape(steps * n, features)
    kernel = _rows(bufs, base, B_KERNEL, features, width)
    matmul(x_rows, dz_rows, _rows(bufs, base, B_KERNEL_GRAD, features, width), True, False)
    if need_dx:
        dx_tm = _tm(bufs, base, B_DX_TM, steps, n, features)
        matmul(dz_rows, kernel, dx_tm.reshape(steps * n, features), False, True)
        dx3 = bufs[base + B_DX][:n * steps * features].reshape(n, steps, features)
        _relayout(dx3, dx_tm, _rows(bufs, base, B_SCALE, n, features), rates[0] > 0, backwards, True)


GATES_BY_CELL = np.array([GATES[cell] for cell in range(4)], np.int64)


@njit
def embedding_step_forward(x, table, y, output_dim):
    """Embedding.forward on flat buffers: x the batch's indices, table [input_dim * output_dim],
    y [positions * output_dim]. fit checked every index of the training data before the first
    step (train/compile.py check_inputs), so no lookup here can miss."""
    m = x.shape[0]
    embedding_forward(x, table.reshape(-1, output_dim), y[:m * output_dim].reshape(m, output_dim))


@njit
def embedding_mask(x, keep):
    """Embedding.compute_mask with mask_zero (x != 0) as the 1.0 / 0.0 the recurrent layers read."""
    for i in range(x.shape[0]):
        keep[i] = 1.0 if x[i] != 0.0 else 0.0


@njit
def embedding_step_backward(x, dy, grad, output_dim):
    """Embedding.backward: the table's gradient (the indices get none)."""
    embedding_backward(x, dy.reshape(x.shape[0], output_dim), grad.reshape(-1, output_dim))
