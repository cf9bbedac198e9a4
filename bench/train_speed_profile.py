"""Where a dense compiled step (784 → hidden relu → 10 softmax, Adam, categorical cross-entropy,
accuracy) spends its time: CPU µs per batch of the compiled epoch, of the kernel call alone, and
of each piece of the step run alone in a compiled loop on the same shapes. 1 BLAS thread,
FTZ/DAZ on, float32.

    python bench/train_speed_profile.py                 # W1 at batch 32 and 512
    python bench/train_speed_profile.py --batch 128 --workload 256,256

Each piece runs inside one numba loop of as many calls as the epoch has batches, so it pays no
Python dispatch (the compiled step does not either). The gather walks a shuffled order over the
188 MB source (cold lines), as in training. "fit epoch" is model.fit's epoch as the user runs it
(auto chunks); "kernel calls" the time inside train_plan_steps; their difference is the Python
around the chunks (optimizer constants, snapshots, callbacks). "rest" = kernel calls − pieces:
the loop itself, the row scales, what the pieces miss.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
from threadpoolctl import threadpool_limits

threadpool_limits(1)

from trainctl.jit import njit  # noqa: E402
from trainctl.jit.fpu import FlushDenormals  # noqa: E402
from trainctl.kernels.activations import (  # noqa: E402
    activation_backward_bias_grad_inline,
    bias_activation_forward_inline,
)
from trainctl.kernels.batches import gather_rows  # noqa: E402
from trainctl.kernels.blas import gemm  # noqa: E402
from trainctl.kernels.codes import ACTIVATION_CODES, LOSS_CODES, METRIC_CODES  # noqa: E402
from trainctl.kernels.losses import softmax_crossentropy_backward  # noqa: E402
from trainctl.kernels.metrics import metric_value  # noqa: E402
from trainctl.kernels.optimizers import adam_update  # noqa: E402
from trainctl.kernels.steps import batch_loss  # noqa: E402
from trainctl.nn.model import Sequential  # noqa: E402
from trainctl.train import compiled  # noqa: E402


@njit
def _gather_loop(x, y, order, batch, n, xb, yb):
    rows = x.shape[0]
    for step in range(n):
        start = (step * batch) % (rows - batch)
        gather_rows(x, order, start, batch, xb)
        gather_rows(y, order, start, batch, yb)


@njit
def _gemm_loop(a, b, out, trans_a, trans_b, n):
    for _ in range(n):
        gemm(a, b, out, trans_a, trans_b)


@njit
def _bias_activation_loop(z, bias, out, code, n):
    for _ in range(n):
        bias_activation_forward_inline(z, bias, out, code)


@njit
def _backward_bias_loop(z, y, dy, dz, dbias, code, n):
    for _ in range(n):
        activation_backward_bias_grad_inline(z, y, dy, dz, dbias, code)


@njit
def _loss_loop(code, yb, probs, scale, per_row, dz, n):
    total = 0.0
    for _ in range(n):
        softmax_crossentropy_backward(code, yb, probs, scale, per_row, dz)
        total += batch_loss(per_row, scale)
    return total


@njit
def _metric_loop(metric, yb, probs, n):
    total = 0.0
    for _ in range(n):
        total += metric_value(metric, yb, probs)
    return total


@njit
def _scale_loop(scale, rows, n):
    for _ in range(n):
        for i in range(rows):
            scale[i] = 1.0 / rows


@njit
def _adam_loop(value, grad, m, v, c, one, clipvalue, n):
    for _ in range(n):
        adam_update(value, grad, m, v, c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7], one, clipvalue)


def cpu_us(run, n_steps: int, trials: int = 3) -> float:
    """CPU µs per step of run(n_steps) (one compiled call), best of `trials` after a warm call."""
    run(8)
    best = float("inf")
    for _ in range(trials):
        start = time.process_time()
        run(n_steps)
        best = min(best, time.process_time() - start)
    return best / n_steps * 1e6


def fit_timing(x, y, hidden, batch):
    """(fit epoch, kernel calls) CPU µs per batch of model.fit as bench/train_speed.py runs it:
    auto chunks, the median of 3 epochs after a first, each timed from its begin to its end."""
    from trainctl.train.callbacks import Callback

    layers = [{"type": "dense", "units": hidden[0], "activation": "relu", "input_shape": [x.shape[1]]}]
    layers += [{"type": "dense", "units": u, "activation": "relu"} for u in hidden[1:]]
    layers += [{"type": "dense", "units": 10, "activation": "softmax"}]
    model = Sequential(layers, seed=0)
    model.compile(optimizer={"type": "adam", "learning_rate": 1e-3}, loss="categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(x[:4096], y[:4096], epochs=1, batch_size=batch, verbose=0, steps_per_execution=64)  # compile / load
    assert model.compiled_fallback is None, model.compiled_fallback
    inside = [0.0]
    launch = compiled.CompiledSteps._launch_dense

    def timed_launch(self, *args):
        start = time.process_time()
        try:
            return launch(self, *args)
        finally:
            inside[0] += time.process_time() - start

    class EpochTimer(Callback):
        epochs: list = []

        def on_epoch_begin(self, epoch, logs=None):
            self.start, self.start_inside = time.process_time(), inside[0]

        def on_epoch_end(self, epoch, logs=None):
            self.epochs.append((time.process_time() - self.start, inside[0] - self.start_inside))

    compiled.CompiledSteps._launch_dense = timed_launch
    compiled._loaded.add("train_plan_steps-float32")  # auto chunks on the loop from the first step
    timer = EpochTimer()
    try:
        model.fit(x, y, epochs=4, batch_size=batch, callbacks=[timer])
    finally:
        compiled.CompiledSteps._launch_dense = launch
    steps = -(-x.shape[0] // batch)
    fit_s, kernel_s = sorted(timer.epochs[1:])[1]
    return fit_s / steps * 1e6, kernel_s / steps * 1e6, model


def profile(batch: int, hidden: list[int], x, y, rng) -> None:
    n = -(-x.shape[0] // batch)
    fit_us, kernel_us, model = fit_timing(x, y, hidden, batch)
    f32 = np.float32
    relu, softmax, linear = (ACTIVATION_CODES[k] for k in ("relu", "softmax", "linear"))
    cce, accuracy = LOSS_CODES["categorical_crossentropy"], METRIC_CODES["categorical_accuracy"]
    widths = [x.shape[1], *hidden, 10]
    order = rng.permutation(x.shape[0]).astype(np.int64)
    xb, yb = np.empty((batch, widths[0]), f32), np.empty((batch, 10), f32)
    parts: dict[str, float] = {}
    with FlushDenormals(True):
        parts["gather x+y (shuffled)"] = cpu_us(lambda k: _gather_loop(x, y, order, batch, k, xb, yb), n)
        parts["row scales"] = cpu_us(lambda k: _scale_loop(np.empty(batch, f32), batch, k), n)
        acts, records = xb, []
        for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
            layer = model.layers[i]
            w, bias = np.asarray(layer.kernel.value), np.asarray(layer.bias.value)
            z, out = np.empty((batch, b), f32), np.empty((batch, b), f32)
            code = softmax if i == len(widths) - 2 else relu
            tag = f"{a}x{b}"
            xin = acts
            parts[f"fwd gemm {tag}"] = cpu_us(lambda k: _gemm_loop(xin, w, z, False, False, k), n)
            gemm_once = z.copy()
            name = "softmax" if code == softmax else "relu"
            parts[f"fwd bias+{name} {tag}"] = cpu_us(lambda k: _bias_activation_loop(z, bias * 0, out, code, k), n)
            z[...] = gemm_once
            _bias_activation_loop(z, bias, out, code, 1)
            records.append((xin, w, z, out, code, tag))
            acts = out
        probs = acts
        per_row, scale, dz_out = np.empty(batch, f32), np.full(batch, 1 / batch, f32), np.empty((batch, 10), f32)
        parts["softmax-CE loss+grad, batch loss"] = cpu_us(
            lambda k: _loss_loop(cce, yb, probs, scale, per_row, dz_out, k), n)
        parts["accuracy"] = cpu_us(lambda k: _metric_loop(accuracy, yb, probs, k), n)
        dy = dz_out
        for i in range(len(records) - 1, -1, -1):
            xin, w, z, out, code, tag = records[i]
            dz, gw, gb, dx = np.empty_like(z), np.empty_like(w), np.empty(w.shape[1], f32), np.empty_like(xin)
            c = linear if i == len(records) - 1 else code
            parts[f"bwd act+bias grad {tag}"] = cpu_us(lambda k: _backward_bias_loop(z, out, dy, dz, gb, c, k), n)
            _backward_bias_loop(z, out, dy, dz, gb, c, 1)
            parts[f"bwd dW gemm {tag}"] = cpu_us(lambda k: _gemm_loop(xin, dz, gw, True, False, k), n)
            if i > 0:
                parts[f"bwd dx gemm {tag}"] = cpu_us(lambda k: _gemm_loop(dz, w, dx, False, True, k), n)
            dy = dx
        size = sum(a * b + b for a, b in zip(widths[:-1], widths[1:]))
        value, m, v = np.zeros(size, f32), np.zeros(size, f32), np.zeros(size, f32)
        grad = rng.standard_normal(size).astype(f32) * f32(1e-3)
        c = np.array([-1e-3, 0.9, 0.999, 0.1, 0.001, 0.1, 0.001, 1e-7], f32)
        parts[f"adam over {size} weights"] = cpu_us(lambda k: _adam_loop(value, grad, m, v, c, f32(1), f32(0), k), n)
    total = sum(parts.values())
    matmuls = sum(v for k, v in parts.items() if "gemm" in k)
    print(f"\n{'-'.join(map(str, widths))} batch {batch}: fit epoch {fit_us:.1f} µs/batch "
          f"({batch / fit_us * 1e3:.0f}k samples/CPU-s), kernel calls {kernel_us:.1f} µs/batch "
          f"({batch / kernel_us * 1e3:.0f}k), gemms alone {matmuls:.1f} (bound {batch / matmuls * 1e3:.0f}k)")
    for key, value in parts.items():
        print(f"  {key:36s} {value:7.2f} µs {100 * value / kernel_us:5.1f}%")
    print(f"  {'rest (loop, what the pieces miss)':36s} {kernel_us - total:7.2f} µs "
          f"{100 * (kernel_us - total) / kernel_us:5.1f}%")
    print(f"  {'Python around the chunks':36s} {fit_us - kernel_us:7.2f} µs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, nargs="+", default=[32, 512])
    parser.add_argument("--workload", default="32", help="hidden widths, comma-separated (W1: 32, W2: 256,256)")
    parser.add_argument("--samples", type=int, default=60000)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.samples, 784), dtype=np.float32)
    y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, args.samples)]
    hidden = [int(v) for v in args.workload.split(",")]
    for batch in args.batch:
        profile(batch, hidden, x, y, rng)


if __name__ == "__main__":
    main()
