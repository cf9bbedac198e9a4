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
from trainctl.kernels.recurrent_gates import (
    _act,
    _add_input,
    _carry_grad,
    _dact,
    _drop_state,
    _source_step,
    _specialised,
    _start_grad,
    _sum_bias_grad,
)

# the gated cells live in their own modules; importable from here, as the layers call them
from trainctl.kernels.recurrent_gru import gru_backward, gru_forward  # noqa: F401
from trainctl.kernels.recurrent_gru_reset_after import (  # noqa: F401
    gru_reset_after_backward,
    gru_reset_after_forward,
)
from trainctl.kernels.recurrent_lstm import (  # noqa: F401
    _lstm_forward_for,
    lstm_backward,
    lstm_forward,
)


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
