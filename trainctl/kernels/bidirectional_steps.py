"""Bidirectional on the compiled loop (kernels/plan_layers.py KIND_BIDIRECTIONAL): what
nn/layers/wrappers.Bidirectional does around its two recurrent copies, element by element as its
numpy calls do, so the two paths agree bit for bit. The copies themselves run as two calls of
recurrent_steps.recurrent_forward / recurrent_backward from the dispatch, which the sequence loop
links already: this module adds only the merge, the split of dy and the sum of the two dx.

The layer's geometry row (geo[layer, G_A:]): the forward copy's R_* row (recurrent_steps.N_R
columns), the backward copy's, then BI_MODE (an index of MERGE_MODES) and BI_DRAWS (the index in
the loop's uniforms and offsets of the backward copy's dropout draws: its own generator's). Its
slots: S_Y the merged output, S_DX the summed dx, S_AUX / S_AUX + 1 the copies' dy, S_AUX + 2 one
value 0.5 in the model's dtype (ave multiplies by it as numpy multiplies by dtype(0.5)).
"""

from __future__ import annotations

from trainctl.jit import njit
from trainctl.kernels.plan_layout import G_A, G_TIMES, S_AUX, S_DX, S_Y
from trainctl.kernels.recurrent_steps import B_DX, B_Y, N_R, R_BLOCK, R_FEATURES, R_SEQUENCES, R_STEPS, R_UNITS

MERGE_MODES = ("concat", "sum", "mul", "ave")  # Bidirectional's merge_mode, by code
MERGE_CONCAT, MERGE_SUM, MERGE_MUL, MERGE_AVE = range(4)
BI_MODE, BI_DRAWS = 2 * N_R, 2 * N_R + 1
assert G_A + BI_DRAWS < G_TIMES, "a Bidirectional's row overlaps G_TIMES: widen plan_layout's rows"


@njit(inline="always")
def _outputs(count, g, bufs):
    """The merge mode, units, positions (the steps when the copies return sequences, else 1),
    the merged width and both copies' outputs [count, positions, units] (processing order)."""
    units, positions = g[R_UNITS], g[R_STEPS] if g[R_SEQUENCES] == 1 else 1
    mode = g[BI_MODE]
    size = count * positions * units
    y_forward = bufs[g[R_BLOCK] + B_Y][:size].reshape(count, positions, units)
    y_backward = bufs[g[N_R + R_BLOCK] + B_Y][:size].reshape(count, positions, units)
    return mode, units, positions, 2 * units if mode == MERGE_CONCAT else units, y_forward, y_backward


@njit
def bidirectional_merge(count, g, bufs, sl):
    """Bidirectional.forward once both copies ran: y [count, positions, width] from the forward
    copy's output and the backward copy's, its sequence reversed back along time."""
    mode, units, positions, width, y_forward, y_backward = _outputs(count, g, bufs)
    y = bufs[sl[S_Y]][:count * positions * width].reshape(count, positions, width)
    half = bufs[sl[S_AUX + 2]][0]
    for i in range(count):
        for t in range(positions):
            back = positions - 1 - t
            for j in range(units):
                a, b = y_forward[i, t, j], y_backward[i, back, j]
                if mode == MERGE_CONCAT:
                    y[i, t, j] = a
                    y[i, t, units + j] = b
                elif mode == MERGE_SUM:
                    y[i, t, j] = a + b
                elif mode == MERGE_MUL:
                    y[i, t, j] = a * b
                else:  # np.add into y, then y *= 0.5: the sum rounded to the dtype first
                    total = a + b
                    y[i, t, j] = total * half


@njit
def bidirectional_split(count, g, dy, bufs, sl):
    """Bidirectional.backward's dy of each copy (into S_AUX, S_AUX + 1) by the merge mode, the
    backward copy's reversed along time into its processing order; returns their length."""
    mode, units, positions, width, y_forward, y_backward = _outputs(count, g, bufs)
    dy3 = dy.reshape(count, positions, width)
    size = count * positions * units
    d_forward = bufs[sl[S_AUX]][:size].reshape(count, positions, units)
    d_backward = bufs[sl[S_AUX + 1]][:size].reshape(count, positions, units)
    half = bufs[sl[S_AUX + 2]][0]
    for i in range(count):
        for t in range(positions):
            back = positions - 1 - t
            for j in range(units):
                value = dy3[i, t, j]
                if mode == MERGE_CONCAT:
                    d_forward[i, t, j] = value
                    d_backward[i, back, j] = dy3[i, t, units + j]
                elif mode == MERGE_SUM:
                    d_forward[i, t, j] = value
                    d_backward[i, back, j] = value
                elif mode == MERGE_MUL:  # each copy's gradient is dy times the other's output
                    d_forward[i, t, j] = value * y_backward[i, back, j]
                    d_backward[i, back, j] = value * y_forward[i, t, j]
                else:
                    scaled = value * half
                    d_forward[i, t, j] = scaled
                    d_backward[i, back, j] = scaled
    return size


@njit
def bidirectional_dx(count, g, bufs, sl):
    """dx = the forward copy's dx + the backward copy's (np.add), [count, steps, features] flat."""
    size = count * g[R_STEPS] * g[R_FEATURES]
    dx = bufs[sl[S_DX]][:size]
    dx_forward, dx_backward = bufs[g[R_BLOCK] + B_DX][:size], bufs[g[N_R + R_BLOCK] + B_DX][:size]
    for m in range(size):
        dx[m] = dx_forward[m] + dx_backward[m]
