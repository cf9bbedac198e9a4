"""Pieces of a training step in compiled code: Dense forward/backward (one call each, used by
the Python path and by the compiled loop, kernels/plan_steps.py, so both paths run the same
instructions; the products go to numpy's BLAS, kernels/blas.py), the batch loss, and the optimizer update by code.
"""

from __future__ import annotations

import numpy as np

from trainctl.jit import njit
from trainctl.kernels.activations import (
    activation_backward_bias_grad_inline,
    bias_activation_forward_inline,
)
from trainctl.kernels.blas import dot, gemm
from trainctl.kernels.optimizers import (
    adadelta_update,
    adagrad_update,
    adam_update,
    adamax_update,
    momentum_update,
    rmsprop_centered_update,
    rmsprop_update,
    sgd_update,
)

# how the loss meets the last layer (Trainer.fused)
LOSS_GENERIC, LOSS_SOFTMAX_FUSED, LOSS_SIGMOID_FUSED = 0, 1, 2
# optimizer kernels by code (Optimizer.kernel() names)
OPTIMIZER_CODES = {"sgd_update": 0, "momentum_update": 1, "adam_update": 2, "adamax_update": 3,
                   "adagrad_update": 4, "adadelta_update": 5, "rmsprop_update": 6,
                   "rmsprop_centered_update": 7}


ANY_CODE = -1  # the dense kernels read the activation code from their argument at run time


def _dense_kernels(fixed):
    """(dense_forward, dense_backward) with the activation code fixed when they are compiled
    (`fixed`), or read from the argument (`fixed` = ANY_CODE, the compiled training loop's).
    The activation bodies are inlined, so a fixed code compiles that activation only (numba
    prunes the other branches): a cold cache compiles relu's Dense in a fraction of the time
    of all fifteen activations. Same arithmetic either way: bit-identical results."""

    @njit
    def dense_forward(x, kernel, bias, z, y, code):
        """z = x @ kernel; y = act(z + bias) (z keeps the biased pre-activation)."""
        code = code if fixed == ANY_CODE else fixed
        gemm(x, kernel, z, False, False)
        bias_activation_forward_inline(z, bias, y, code)

    @njit
    def dense_backward(x, kernel, z, y, dy, dz, dx, kernel_grad, bias_grad, code, need_dx):
        """dz = act'(z) * dy, bias_grad = sum(dz), kernel_grad = x.T @ dz, dx = dz @ kernel.T."""
        code = code if fixed == ANY_CODE else fixed
        activation_backward_bias_grad_inline(z, y, dy, dz, bias_grad, code)
        gemm(x, dz, kernel_grad, True, False)
        if need_dx:
            gemm(dz, kernel, dx, False, True)

    return dense_forward, dense_backward


dense_forward, dense_backward = _dense_kernels(ANY_CODE)
_fixed_dense: dict = {}


def dense_kernels_for(code: int):
    """(dense_forward, dense_backward) compiled for the one activation `code` (made once per
    code per process): the Python path's Dense calls them; the compiled loop the generic ones."""
    kernels = _fixed_dense.get(code)
    if kernels is None:
        kernels = _fixed_dense[code] = _dense_kernels(int(code))
    return kernels


@njit
def batch_loss(per_row, row_scale):
    """sum(row_scale * per_row): the batch's loss (BLAS dot, in the arrays' dtype)."""
    return dot(per_row, row_scale)


@njit
def _update(opt_code, value, grad, s0, s1, s2, c, flag, clipvalue, one):
    if opt_code == 0:
        sgd_update(value, grad, c[0], one, clipvalue)
    elif opt_code == 1:
        momentum_update(value, grad, s0, c[0], c[1], flag, one, clipvalue)
    elif opt_code == 2:
        adam_update(value, grad, s0, s1, c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7], one, clipvalue)
    elif opt_code == 3:
        adamax_update(value, grad, s0, s1, c[0], c[1], c[2], c[3], c[4], one, clipvalue)
    elif opt_code == 4:
        adagrad_update(value, grad, s0, c[0], c[1], one, clipvalue)
    elif opt_code == 5:
        adadelta_update(value, grad, s0, s1, c[0], c[1], c[2], c[3], one, clipvalue)
    elif opt_code == 6:
        rmsprop_update(value, grad, s0, s1, c[0], c[1], c[2], c[3], c[4], one, clipvalue)
    else:
        rmsprop_centered_update(value, grad, s0, s1, s2, c[0], c[1], c[2], c[3], c[4], one, clipvalue)
