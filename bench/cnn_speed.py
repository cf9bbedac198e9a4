"""CNN training throughput: trainctl vs PyTorch eager (NCHW and channels_last) vs JAX jit, in
one process, interleaved, 1 thread each.

Model: the TF.js MNIST CNN — conv2d 8 5x5 relu → max_pooling2d 2 → conv2d 16 5x5 relu →
max_pooling2d 2 → flatten → dense 10 softmax, input [28, 28, 1]; Adam (lr 1e-3),
categorical cross-entropy, shuffled batches of 32, 64 and 256 from 8,192 random images.
Each round times one shuffled epoch per (framework, batch) in turn, so load on the machine
hits every framework alike; the best round counts. Time is this process's CPU time
(time.process_time: all its threads), so other work on a shared machine does not count
against whoever happened to be running, and a framework that used a second thread would
pay for it; samples/s = samples / CPU seconds. "trainctl python" runs a
step per call from Python, "trainctl compiled" chunks of steps inside one numba call
(steps_per_execution "auto"); both give the same weights. "matmul limit" is the time
of the matrix products alone at the im2col shapes (numpy, out= buffers, same thread): a
trainer built on im2col + GEMM cannot beat it.

    python bench/cnn_speed.py                 # 5 rounds
    python bench/cnn_speed.py --rounds 2 --batches 64
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

N_SAMPLES = 8192
BATCHES = (32, 64, 256)


def make_data(seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.random((N_SAMPLES, 28, 28, 1), dtype=np.float32)
    labels = rng.integers(0, 10, N_SAMPLES)
    return x, np.eye(10, dtype=np.float32)[labels], labels


MNIST_CNN = [
    {"type": "conv2d", "filters": 8, "kernel_size": 5, "activation": "relu",
     "kernel_initializer": "variance_scaling", "input_shape": [28, 28, 1]},
    {"type": "max_pooling2d", "pool_size": 2, "strides": 2},
    {"type": "conv2d", "filters": 16, "kernel_size": 5, "activation": "relu",
     "kernel_initializer": "variance_scaling"},
    {"type": "max_pooling2d", "pool_size": 2, "strides": 2},
    {"type": "flatten"},
    {"type": "dense", "units": 10, "activation": "softmax", "kernel_initializer": "variance_scaling"},
]


class Trainctl:
    """trainctl's Python path (one step per call from Python) or its compiled loop (chunks of
    steps inside one numba call, steps_per_execution "auto": ~50 ms per chunk)."""

    def __init__(self, data, compiled: bool):
        from trainctl.nn.model import Sequential

        self.name = "trainctl compiled" if compiled else "trainctl python"
        self.compiled = compiled
        self.x, self.y, _ = data
        self.models = {}
        for batch in BATCHES:
            model = Sequential(MNIST_CNN, seed=0)
            model.compile(optimizer={"type": "adam", "learning_rate": 0.001}, loss="categorical_crossentropy")
            # compile / load the kernels (an explicit steps_per_execution: the compiled loop even for a short fit)
            model.fit(self.x[:1024], self.y[:1024], epochs=1, batch_size=batch, jit_compile=compiled,
                      steps_per_execution=8)
            if compiled and model.compiled_fallback is not None:
                raise SystemExit(f"the compiled loop did not run: {model.compiled_fallback}")
            self.models[batch] = model

    def epoch(self, batch):
        self.models[batch].fit(self.x, self.y, epochs=1, batch_size=batch, shuffle=True,
                               jit_compile=self.compiled, steps_per_execution="auto")


class Torch:
    def __init__(self, data, channels_last: bool):
        import torch

        torch.set_num_threads(1)
        torch.manual_seed(0)
        self.torch = torch
        self.name = "torch " + ("channels_last" if channels_last else "NCHW")
        x, _, labels = data
        self.x = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
        if channels_last:
            self.x = self.x.contiguous(memory_format=torch.channels_last)
        self.labels = torch.from_numpy(labels).long()
        nn = torch.nn
        self.model = nn.Sequential(nn.Conv2d(1, 8, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(8, 16, 5), nn.ReLU(),
                                   nn.MaxPool2d(2), nn.Flatten(), nn.Linear(256, 10))
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=1e-3)
        self.loss = nn.CrossEntropyLoss()
        self.generator = torch.Generator().manual_seed(0)
        for batch in BATCHES:
            self._steps(batch, 2)

    def _steps(self, batch, limit=None):
        order = self.torch.randperm(N_SAMPLES, generator=self.generator)
        for k, start in enumerate(range(0, N_SAMPLES, batch)):
            if limit is not None and k >= limit:
                break
            index = order[start:start + batch]
            xb, yb = self.x[index], self.labels[index]
            self.optimizer.zero_grad(set_to_none=True)
            self.loss(self.model(xb), yb).backward()
            self.optimizer.step()

    def epoch(self, batch):
        self._steps(batch)


class Jax:
    name = "jax jit"

    def __init__(self, data):
        import jax
        import jax.numpy as jnp
        import optax

        self.jax, self.jnp = jax, jnp
        x, y, _ = data
        self.x, self.y = jnp.asarray(x), jnp.asarray(y)
        key = jax.random.PRNGKey(0)
        k1, k2, k3 = jax.random.split(key, 3)
        params = {
            "k1": jax.random.normal(k1, (5, 5, 1, 8)) * 0.2, "b1": jnp.zeros(8),
            "k2": jax.random.normal(k2, (5, 5, 8, 16)) * 0.07, "b2": jnp.zeros(16),
            "w": jax.random.normal(k3, (256, 10)) * 0.06, "b": jnp.zeros(10),
        }
        dn = ("NHWC", "HWIO", "NHWC")

        def forward(p, xb):
            h = jax.lax.conv_general_dilated(xb, p["k1"], (1, 1), "VALID", dimension_numbers=dn) + p["b1"]
            h = jax.lax.reduce_window(jax.nn.relu(h), -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
            h = jax.lax.conv_general_dilated(h, p["k2"], (1, 1), "VALID", dimension_numbers=dn) + p["b2"]
            h = jax.lax.reduce_window(jax.nn.relu(h), -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
            return h.reshape(h.shape[0], -1) @ p["w"] + p["b"]

        def loss(p, xb, yb):
            return optax.softmax_cross_entropy(forward(p, xb), yb).mean()

        self.optimizer = optax.adam(1e-3)

        @jax.jit
        def step(p, state, xb, yb):
            grads = jax.grad(loss)(p, xb, yb)
            updates, state = self.optimizer.update(grads, state, p)
            return optax.apply_updates(p, updates), state

        self.step = step
        self.params, self.state = params, self.optimizer.init(params)
        self.rng = np.random.default_rng(0)
        for batch in BATCHES:  # compile once per batch shape
            self._steps(batch, 2)

    def _steps(self, batch, limit=None):
        order = self.rng.permutation(N_SAMPLES)
        n_full = (N_SAMPLES // batch) * batch  # ragged last batch would recompile; all batches divide 8192
        for k, start in enumerate(range(0, n_full, batch)):
            if limit is not None and k >= limit:
                break
            index = order[start:start + batch]
            self.params, self.state = self.step(self.params, self.state, self.x[index], self.y[index])
        self.jax.block_until_ready(self.params)

    def epoch(self, batch):
        self._steps(batch)


class MatmulLimit:
    """The GEMMs of one training step at the im2col shapes (forward, kernel grads, input
    grads; no dx for the first layer), with preallocated outputs."""

    name = "matmul limit"

    def __init__(self, data):
        rng = np.random.default_rng(0)
        self.shapes = {}
        for batch in BATCHES:
            r1, r2 = batch * 24 * 24, batch * 8 * 8
            mats = []

            def gemm(m, k, n, transpose_a=False):
                a = rng.random((k, m) if transpose_a else (m, k), dtype=np.float32)
                b = rng.random((k, n), dtype=np.float32)
                out = np.empty((m, n), np.float32)
                mats.append((a.T if transpose_a else a, b, out))

            gemm(r1, 25, 8)                      # conv1 forward
            gemm(r2, 200, 16)                    # conv2 forward
            gemm(batch, 256, 10)                 # dense forward
            gemm(256, batch, 10, True)           # dense kernel grad
            gemm(batch, 10, 256)                 # dense input grad
            gemm(200, r2, 16, True)              # conv2 kernel grad
            gemm(r2, 16, 200)                    # conv2 input grad (columns)
            gemm(25, r1, 8, True)                # conv1 kernel grad
            self.shapes[batch] = mats

    def epoch(self, batch):
        mats = self.shapes[batch]
        for _ in range(N_SAMPLES // batch):
            for a, b, out in mats:
                np.matmul(a, b, out=out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batches", type=int, nargs="*", default=list(BATCHES))
    parser.add_argument("--skip", nargs="*", default=[], help="frameworks to leave out: jax torch")
    args = parser.parse_args()
    data = make_data()
    with threadpool_limits(limits=1):
        runners = [Trainctl(data, compiled=False), Trainctl(data, compiled=True)]
        if "torch" not in args.skip:
            runners += [Torch(data, channels_last=False), Torch(data, channels_last=True)]
        if "jax" not in args.skip:
            runners.append(Jax(data))
        runners.append(MatmulLimit(data))
        best: dict[tuple[str, int], float] = {}
        for _ in range(args.rounds):
            for batch in args.batches:
                for runner in runners:
                    start = time.process_time()
                    runner.epoch(batch)
                    rate = N_SAMPLES / (time.process_time() - start)
                    key = (runner.name, batch)
                    best[key] = max(best.get(key, 0.0), rate)
    names = [r.name for r in runners]
    print(f"samples per CPU second, 1 thread, best of {args.rounds} interleaved rounds, "
          f"{N_SAMPLES} samples per epoch")
    ours = [n for n in names if n.startswith("trainctl")]
    print(f"{'batch':>6} " + " ".join(f"{n:>20}" for n in names)
          + "".join(f" {n.split()[1] + ' vs torch':>18} {n.split()[1] + ' % limit':>17}" for n in ours))
    for batch in args.batches:
        row = [best[(n, batch)] for n in names]
        torch_best = max((best[(n, batch)] for n in names if n.startswith("torch")), default=float("nan"))
        limit = best[("matmul limit", batch)]
        print(f"{batch:>6} " + " ".join(f"{v:>20,.0f}" for v in row)
              + "".join(f" {best[(n, batch)] / torch_best:>17.2f}x {100 * best[(n, batch)] / limit:>16.0f}%"
                        for n in ours))

if __name__ == "__main__":
    main()
