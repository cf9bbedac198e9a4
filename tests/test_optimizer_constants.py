"""Optimizer.constants_table (a compiled chunk's per-step constants at once) against the step-by-step
constants() / end_step() the Python path runs, bit for bit, and Adam's against its scalar formula
(TF.js: accBeta *= beta after each step, in float32) with flush-to-zero on and off."""

from __future__ import annotations

import numpy as np
import pytest

from trainctl.jit.fpu import FlushDenormals
from trainctl.nn.optimizers import build_optimizer

SPECS = [
    "sgd",
    {"type": "momentum", "momentum": 0.9, "use_nesterov": True},
    {"type": "adam", "learning_rate": 0.01, "beta1": 0.5, "beta2": 0.9},
    {"type": "adamax", "decay": 0.01},
    "adagrad",
    "adadelta",
    "rmsprop",
    {"type": "rmsprop", "centered": True, "momentum": 0.5},
]


def _built(spec, dtype):
    optimizer = build_optimizer(spec)
    optimizer._scalars = {k: np.array([v], dtype) for k, v in optimizer.initial_scalars().items()}
    return optimizer


def _step_by_step(optimizer, dtype, n_steps):
    rows, flags = [], []
    for _ in range(n_steps):
        constants = optimizer.constants(dtype)
        rows.append([c for c in constants if not isinstance(c, (bool, np.bool_))])
        flags.append(any(bool(c) for c in constants if isinstance(c, (bool, np.bool_))))
        optimizer.end_step()
        optimizer.iterations += 1
    return np.array(rows, dtype), bool(flags[-1])


@pytest.mark.parametrize("flush", [True, False])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s if isinstance(s, str) else f"{s['type']}-{len(s)}")
def test_the_table_is_the_steps_one_by_one(spec, dtype, flush):
    """In two chunks (the second starting where the first left the scalars), long enough for
    Adam's float32 powers 0.5^t to pass through the denormals (t > 126) to zero."""
    with FlushDenormals(flush):
        one_by_one, chunked = _built(spec, dtype), _built(spec, dtype)
        expected, flag = _step_by_step(one_by_one, dtype, 300)
        first, first_flag = chunked.constants_table(dtype, 170)
        second, second_flag = chunked.constants_table(dtype, 130)
    table = np.concatenate([first, second])
    assert table.dtype == dtype and table.flags.c_contiguous
    assert table.tobytes() == expected.tobytes()
    assert first_flag == second_flag == flag
    assert chunked.iterations == one_by_one.iterations == 300
    for name, value in one_by_one._scalars.items():
        assert chunked._scalars[name].tobytes() == value.tobytes()


@pytest.mark.parametrize("flush", [True, False])
def test_adam_powers_are_tfjs_products(flush):
    """Columns 5 and 6 are 1 - accBeta1 and 1 - accBeta2 before each step, with accBeta
    multiplied by beta in float32 after each step (adam_optimizer.ts); 0.5^136 is a denormal,
    flushed to zero when the thread flushes, kept otherwise."""
    optimizer = _built({"type": "adam", "beta1": 0.5, "beta2": 0.75}, np.float32)
    with FlushDenormals(flush):
        table, _ = optimizer.constants_table(np.float32, 135)
        acc1, acc2 = np.float32(0.5), np.float32(0.75)
        for step in range(135):
            assert table[step, 5] == np.float32(1) - acc1 and table[step, 6] == np.float32(1) - acc2
            acc1, acc2 = acc1 * np.float32(0.5), acc2 * np.float32(0.75)
    kept = optimizer._scalars["acc_beta1"][0]
    assert kept == acc1 and optimizer._scalars["acc_beta2"][0] == acc2
    assert kept == (np.float32(0) if flush else np.float32(2.0 ** -136))
