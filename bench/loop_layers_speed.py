"""Samples per CPU-second of the layer kinds the compiled loop took over (issue 13), Adam, batch
32, float32, one epoch of 8,192 samples after a warm-up: trainctl's compiled loop vs trainctl's
Python step loop vs PyTorch eager, one process, 1 thread, interleaved, best of 3 rounds. CPU
time, not wall time (the machine is shared). Models (--model):
- mlp: Dense / LeakyReLU / LayerNormalization / ELU / GaussianNoise (PyTorch: the same layers,
  the noise added by hand), softmax cross-entropy over 32 features;
- bilstm: 20 steps x 8 features -> Bidirectional(LSTM 32, concat) -> Dense 1, mean squared error
  (PyTorch: nn.LSTM(bidirectional=True), its sigmoid gates where TF.js's are hard_sigmoid).

    python bench/loop_layers_speed.py [--model mlp|bilstm]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

N_SAMPLES, FEATURES, CLASSES, BATCH = 8192, 32, 10, 32
STEPS, STEP_FEATURES, LSTM_UNITS = 20, 8, 32  # the bilstm model
ROUNDS = 3
BILSTM_LAYERS = [{"type": "bidirectional", "input_shape": [STEPS, STEP_FEATURES],
                  "layer": {"type": "lstm", "units": LSTM_UNITS}}, {"type": "dense", "units": 1}]
LAYERS = [{"type": "dense", "units": 64, "input_shape": [FEATURES]}, {"type": "leaky_re_lu"},
          {"type": "layer_normalization"}, {"type": "dense", "units": 64}, {"type": "elu"},
          {"type": "gaussian_noise", "stddev": 0.1}, {"type": "dense", "units": CLASSES, "activation": "softmax"}]


def data():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N_SAMPLES, FEATURES)).astype(np.float32)
    return x, np.eye(CLASSES, dtype=np.float32)[rng.integers(0, CLASSES, N_SAMPLES)]


def bilstm_data():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N_SAMPLES, STEPS, STEP_FEATURES)).astype(np.float32)
    return x, x[:, :, 0].mean(axis=1, keepdims=True).astype(np.float32)


def trainctl_rate(x, y, jit: bool, model_name: str = "mlp") -> float:
    from trainctl.nn.model import Sequential

    if model_name == "bilstm":
        model = Sequential(BILSTM_LAYERS, seed=1)
        model.compile(optimizer="adam", loss="mean_squared_error")
    else:
        model = Sequential(LAYERS, seed=1)
        model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    options = dict(batch_size=BATCH, jit_compile=jit, steps_per_execution=64, verbose=0)
    model.fit(x[:256], y[:256], epochs=1, **options)  # warm-up: kernels loaded or compiled
    started = time.process_time()
    model.fit(x, y, epochs=1, **options)
    assert (model.compiled_fallback is None) == jit, model.compiled_fallback
    return N_SAMPLES / (time.process_time() - started)


def _timed(epoch) -> float:
    """Samples per CPU-second of epoch(N_SAMPLES), after epoch(256) as a warm-up."""
    epoch(256)
    started = time.process_time()
    epoch(N_SAMPLES)
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

    return _timed(epoch)


def torch_bilstm_rate(x, y) -> float:
    import torch

    torch.set_num_threads(1)
    lstm = torch.nn.LSTM(STEP_FEATURES, LSTM_UNITS, batch_first=True, bidirectional=True)
    head = torch.nn.Linear(2 * LSTM_UNITS, 1)
    optimizer = torch.optim.Adam([*lstm.parameters(), *head.parameters()], lr=1e-3)
    inputs, targets = torch.from_numpy(x), torch.from_numpy(y)

    def epoch(n: int) -> None:
        order = torch.randperm(n)
        for start in range(0, n, BATCH):
            rows = order[start:start + BATCH]
            _, (h, _) = lstm(inputs[rows])  # h [2, batch, units]: each direction's last state, as TF.js's
            loss = torch.nn.functional.mse_loss(head(torch.cat([h[0], h[1]], dim=1)), targets[rows])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

    return _timed(epoch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("mlp", "bilstm"), default="mlp")
    model_name = parser.parse_args().model
    x, y = bilstm_data() if model_name == "bilstm" else data()
    peer = torch_bilstm_rate if model_name == "bilstm" else torch_rate
    best = {"compiled loop": 0.0, "python steps": 0.0, "torch eager": 0.0}
    for _ in range(ROUNDS):  # interleaved: the machine's load hits every path alike
        best["compiled loop"] = max(best["compiled loop"], trainctl_rate(x, y, True, model_name))
        best["python steps"] = max(best["python steps"], trainctl_rate(x, y, False, model_name))
        best["torch eager"] = max(best["torch eager"], peer(x, y))
    for name, rate in best.items():
        print(f"{name:14s} {rate:10.0f} samples/CPU-s")
    compiled = best["compiled loop"]
    print(f"compiled / python steps {compiled / best['python steps']:.2f}   compiled / torch {compiled / best['torch eager']:.2f}")


if __name__ == "__main__":
    main()
