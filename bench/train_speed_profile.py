"""Where a W1 (784 → 32 relu → 10 softmax, Adam, categorical cross-entropy) compiled step spends
its time: CPU µs per batch of the whole compiled epoch against each kernel alone, 1 BLAS thread,
FTZ/DAZ on, float32.

    python bench/train_speed_profile.py                 # batch 32 and 512
    python bench/train_speed_profile.py --batch 32 512 2048 --workload 256,256

Each part is one kernel called from Python in a loop (a call costs ~0.3 µs of dispatch, which the
compiled loop does not pay). The gather walks the epoch's shuffled order, so its rows come from
all over the 188 MB source (cold lines), as in training. "np.dot in numba" is the BLAS the
compiled step calls (scipy's OpenBLAS through numba); "numpy matmul" is numpy's own OpenBLAS on
the same shape, for choosing the matmul per shape. "rest" is the compiled epoch minus the parts.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import scipy.linalg.cython_blas
from threadpoolctl import threadpool_limits

threadpool_limits(1)

from trainctl.kernels.activations import activation_backward_bias_grad, bias_activation_forward  # noqa: E402
from trainctl.kernels.batches import gather_rows  # noqa: E402
from trainctl.kernels.codes import ACTIVATION_CODES, LOSS_CODES  # noqa: E402
from trainctl.jit.fpu import FlushDenormals  # noqa: E402
from trainctl.jit import njit  # noqa: E402
from trainctl.kernels.losses import softmax_crossentropy_backward  # noqa: E402
from trainctl.kernels.optimizers import adam_update  # noqa: E402
from trainctl.nn.model import Sequential  # noqa: E402


@njit
def _numba_dot(a, b, out):
    np.dot(a, b, out)


def per_call(f, seconds=0.4):
    """CPU µs per call of f (best of 3 runs of ~seconds/3 each)."""
    f()
    t = time.process_time()
    f()
    once = max(time.process_time() - t, 1e-6)
    reps = max(3, int(seconds / 3 / once))
    best = float("inf")
    for _ in range(3):
        t = time.process_time()
        for _ in range(reps):
            f()
        best = min(best, (time.process_time() - t) / reps)
    return best * 1e6


def profile(bs: int, hidden: list[int], x, y, rng) -> None:
    n = x.shape[0]
    layers = [{"type": "dense", "units": hidden[0], "activation": "relu", "input_shape": [784]}]
    layers += [{"type": "dense", "units": u, "activation": "relu"} for u in hidden[1:]]
    layers += [{"type": "dense", "units": 10, "activation": "softmax"}]
    m = Sequential(layers, seed=0)
    m.compile(optimizer={"type": "adam", "learning_rate": 1e-3, "epsilon": 1e-7}, loss="categorical_crossentropy")
    m.fit(x, y, epochs=1, batch_size=bs, verbose=0, steps_per_execution=1000)  # warm: compile/load
    assert m.compiled_fallback is None, m.compiled_fallback
    epochs = 2 if bs < 512 else 3
    t = time.process_time()
    m.fit(x, y, epochs=epochs, batch_size=bs, verbose=0, steps_per_execution=1000)
    el = (time.process_time() - t) / epochs
    steps = -(-n // bs)
    step_us = el / steps * 1e6
    print(f"\n{'-'.join(map(str, [784, *hidden, 10]))} batch {bs}: compiled epoch {el:.3f} CPU s -> "
          f"{n / el / 1e3:.0f}k samples/CPU-s, {step_us:.1f} us/batch")
    relu, softmax, linear = ACTIVATION_CODES["relu"], ACTIVATION_CODES["softmax"], ACTIVATION_CODES["linear"]
    cce = LOSS_CODES["categorical_crossentropy"]
    widths = [784, *hidden, 10]
    f32 = np.float32
    order = rng.permutation(n).astype(np.int64)
    xb = np.empty((bs, 784), f32)
    yb = np.empty((bs, 10), f32)
    cursor = [0]

    def gather():
        start = cursor[0]
        gather_rows(x, order, start, bs, xb)
        gather_rows(y, order, start, bs, yb)
        cursor[0] = (start + bs) % (n - bs)

    parts: dict[str, float] = {}
    numpy_parts: dict[str, float] = {}
    with FlushDenormals(True):
        parts["gather x+y (shuffled)"] = per_call(gather)
        gather()
        acts = [xb]
        for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
            w = np.asarray(m.layers[i].kernel.value)
            bias = np.asarray(m.layers[i].bias.value)
            xin = acts[-1]
            z = np.empty((bs, b), f32)
            out = np.empty((bs, b), f32)
            code = softmax if i == len(widths) - 2 else relu
            tag = f"{a}x{b}"
            parts[f"fwd matmul {tag}"] = per_call(lambda: _numba_dot(xin, w, z))
            numpy_parts[f"fwd matmul {tag}"] = per_call(lambda: np.matmul(xin, w, out=z))
            _numba_dot(xin, w, z)
            z0 = z.copy()
            parts[f"fwd bias+{'softmax' if code == softmax else 'relu'} {tag}"] = per_call(
                lambda: (np.copyto(z, z0), bias_activation_forward(z, bias, out, code))) - per_call(lambda: np.copyto(z, z0))
            bias_activation_forward(z, bias, out, code)
            acts.append((xin, w, z, out, code, tag))
            acts.append(out)
        probs = acts[-1]
        pr = np.empty(bs, f32)
        sc = np.full(bs, 1 / bs, f32)
        dz_out = np.empty((bs, 10), f32)
        parts["softmax-CE loss+grad"] = per_call(lambda: softmax_crossentropy_backward(cce, yb, probs, sc, pr, dz_out))
        dy = dz_out
        layer_records = [r for r in acts if isinstance(r, tuple)]
        for i in range(len(layer_records) - 1, -1, -1):
            xin, w, z, out, code, tag = layer_records[i]
            dz = np.empty_like(z)
            gw = np.empty_like(w)
            gb = np.empty(w.shape[1], f32)
            dx = np.empty_like(xin)
            c = linear if i == len(layer_records) - 1 else code
            parts[f"bwd act+bias grad {tag}"] = per_call(lambda: activation_backward_bias_grad(z, out, dy, dz, gb, c))
            activation_backward_bias_grad(z, out, dy, dz, gb, c)
            parts[f"bwd dW matmul {tag}"] = per_call(lambda: _numba_dot(xin.T, dz, gw))
            numpy_parts[f"bwd dW matmul {tag}"] = per_call(lambda: np.matmul(xin.T, dz, out=gw))
            if i > 0:
                parts[f"bwd dx matmul {tag}"] = per_call(lambda: _numba_dot(dz, w.T, dx))
                numpy_parts[f"bwd dx matmul {tag}"] = per_call(lambda: np.matmul(dz, w.T, out=dx))
            dy = dx
        size = sum(a * b + b for a, b in zip(widths[:-1], widths[1:]))
        flat = np.zeros(size, f32)
        g = rng.standard_normal(size).astype(f32) * f32(1e-3)
        s0 = np.zeros_like(flat)
        s1 = np.zeros_like(flat)
        c = [f32(v) for v in (-1e-3, 0.9, 0.999, 0.1, 0.001, 0.1, 0.001, 1e-7)]
        parts[f"adam over {size} weights"] = per_call(lambda: adam_update(flat, g, s0, s1, *c, f32(1), f32(0)))
    total = sum(parts.values())
    for k, v in parts.items():
        alt = f"   (numpy matmul {numpy_parts[k]:6.1f})" if k in numpy_parts else ""
        print(f"  {k:34s} {v:7.1f} us {100 * v / step_us:5.1f}%{alt}")
    print(f"  {'rest (loop, scale, metrics, ...)':34s} {step_us - total:7.1f} us {100 * (step_us - total) / step_us:5.1f}%")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, nargs="+", default=[32, 512])
    parser.add_argument("--workload", default="32", help="hidden widths, comma-separated (W1: 32, W2: 256,256)")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    n = 60000
    x = rng.standard_normal((n, 784)).astype(np.float32)
    y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, n)]
    hidden = [int(v) for v in args.workload.split(",")]
    for bs in args.batch:
        profile(bs, hidden, x, y, rng)


if __name__ == "__main__":
    main()
