"""Samples per CPU-second of the layer kinds the compiled loop took over (issue 13): an MLP of
Dense / LeakyReLU / LayerNormalization / ELU / GaussianNoise, Adam, batch 32, float32, one epoch
of 8,192 samples after a warm-up: trainctl's compiled loop vs trainctl's Python step loop vs
PyTorch eager (the same layers, the noise added by hand), one process, 1 thread, interleaved,
best of 3 rounds. CPU time, not wall time (the machine is shared).

    python bench/loop_layers_speed.py
"""

from __future__ import annotations

import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

N_SAMPLES, FEATURES, CLASSES, BATCH = 8192, 32, 10, 32
ROUNDS = 3
LAYERS = [{"type": "dense", "units": 64, "input_shape": [FEATURES]}, {"type": "leaky_re_lu"},
          {"type": "layer_normalization"}, {"type": "dense", "units": 64}, {"type": "elu"},
          {"type": "gaussian_noise", "stddev": 0.1}, {"type": "dense", "units": CLASSES, "activation": "softmax"}]


def data():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N_SAMPLES, FEATURES)).astype(np.float32)
    return x, np.eye(CLASSES, dtype=np.float32)[rng.integers(0, CLASSES, N_SAMPLES)]


def trainctl_rate(x, y, jit: bool) -> float:
    from trainctl.nn.model import Sequential

    model = Sequential(LAYERS, seed=1)
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    options = dict(batch_size=BATCH, jit_compile=jit, steps_per_execution=64, verbose=0)
    model.fit(x[:256], y[:256], epochs=1, **options)  # warm-up: kernels loaded or compiled
    started = time.process_time()
    model.fit(x, y, epochs=1, **options)
    assert (model.compiled_fallback is None) == jit, model.compiled_fallback
    return N_SAMPLES / (time.process_time() - started)


def torch_rate(x, y) -> float:
    import torch

    torch.set_num_threads(1)
    dense1, act1, norm = torch.nn.Linear(FEATURES, 64), torch.nn.LeakyReLU(0.3), torch.nn.LayerNorm(64, eps=1e-3)
    dense2, act2, head = torch.nn.Linear(64, 64), torch.nn.ELU(), torch.nn.Linear(64, CLASSES)
    params = [p for m in (dense1, norm, dense2, head) for p in m.parameters()]
    optimizer = torch.optim.Adam(params, lr=1e-3)
    inputs, labels = torch.from_numpy(x), torch.from_numpy(y.argmax(1))

    def epoch(n: int) -> None:
        order = torch.randperm(n)
        for start in range(0, n, BATCH):
            rows = order[start:start + BATCH]
            hidden = act2(dense2(norm(act1(dense1(inputs[rows])))))
            hidden = hidden + 0.1 * torch.randn_like(hidden)
            loss = torch.nn.functional.cross_entropy(head(hidden), labels[rows])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

    epoch(256)
    started = time.process_time()
    epoch(N_SAMPLES)
    return N_SAMPLES / (time.process_time() - started)


def main() -> None:
    x, y = data()
    best = {"compiled loop": 0.0, "python steps": 0.0, "torch eager": 0.0}
    for _ in range(ROUNDS):  # interleaved: the machine's load hits every path alike
        best["compiled loop"] = max(best["compiled loop"], trainctl_rate(x, y, True))
        best["python steps"] = max(best["python steps"], trainctl_rate(x, y, False))
        best["torch eager"] = max(best["torch eager"], torch_rate(x, y))
    for name, rate in best.items():
        print(f"{name:14s} {rate:10.0f} samples/CPU-s")
    compiled = best["compiled loop"]
    print(f"compiled / python steps {compiled / best['python steps']:.2f}   compiled / torch {compiled / best['torch eager']:.2f}")


if __name__ == "__main__":
    main()
