"""Forward + backward time of the zoo's non-convolution layers: trainctl vs PyTorch eager, in
one run, 1 thread (training mode, float32; the median of REPEATS timed rounds of STEPS steps
after a warm-up that compiles the kernels).

  bn_dense     batch_normalization on [batch, 256]        (BatchNorm1d)
  bn_images    batch_normalization on [batch, 24, 24, 8]  (BatchNorm2d, channels_last: torch NHWC via channels_last memory)
  layer_norm   layer_normalization on [batch, 32, 64]     (LayerNorm(64))
  embedding    embedding 10,000 × 64 of [batch, 50] tokens (Embedding)
  up_bilinear  up_sampling2d bilinear ×2 on [batch, 12, 12, 8] (Upsample bilinear, align_corners=False — not TF.js's
               half-pixel-free rule, so only the time is comparable)

    python bench/zoo_speed.py            # batch 32, 256
    python bench/zoo_speed.py --quick    # fewer repeats
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import numpy as np  # noqa: E402

STEPS = 50


def workloads(batch: int):
    rng = np.random.default_rng(0)
    return {
        "bn_dense": ({"type": "batch_normalization", "input_shape": [256]}, rng.standard_normal((batch, 256))),
        "bn_images": ({"type": "batch_normalization", "input_shape": [24, 24, 8]}, rng.standard_normal((batch, 24, 24, 8))),
        "layer_norm": ({"type": "layer_normalization", "input_shape": [32, 64]}, rng.standard_normal((batch, 32, 64))),
        "embedding": ({"type": "embedding", "input_dim": 10000, "output_dim": 64, "input_length": 50},
                      rng.integers(0, 10000, (batch, 50)).astype(np.float64)),
        "up_bilinear": ({"type": "up_sampling2d", "interpolation": "bilinear", "input_shape": [12, 12, 8]},
                        rng.standard_normal((batch, 12, 12, 8))),
    }


def time_rounds(step, repeats: int) -> float:
    step()
    step()  # warm-up (compilation)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(STEPS):
            step()
        times.append((time.perf_counter() - start) / STEPS)
    return statistics.median(times)


def trainctl_step(spec, x):
    from trainctl.nn.model import Sequential

    model = Sequential([spec], seed=0)
    model.allocate(x.shape[0])
    layer = model.layers[0]
    x32 = x.astype(np.float32)
    dy = np.ones((x.shape[0], *model.output_shape), np.float32)

    def step():
        layer.forward(x32, True)
        layer.backward(dy, spec["type"] != "embedding")

    return step


def torch_step(name, spec, x):
    import torch

    torch.set_num_threads(1)
    if name == "bn_dense":
        module, xt = torch.nn.BatchNorm1d(256, eps=1e-3), torch.tensor(x, dtype=torch.float32, requires_grad=True)
    elif name == "bn_images":
        module = torch.nn.BatchNorm2d(8, eps=1e-3)
        xt = torch.tensor(np.moveaxis(x, -1, 1), dtype=torch.float32).contiguous(memory_format=torch.channels_last)
        xt.requires_grad_(True)
    elif name == "layer_norm":
        module, xt = torch.nn.LayerNorm(64, eps=1e-3), torch.tensor(x, dtype=torch.float32, requires_grad=True)
    elif name == "embedding":
        module, xt = torch.nn.Embedding(10000, 64), torch.tensor(x, dtype=torch.int64)
    else:
        module = torch.nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
        xt = torch.tensor(np.moveaxis(x, -1, 1), dtype=torch.float32).contiguous(memory_format=torch.channels_last)
        xt.requires_grad_(True)
    module.train()
    out = module(xt)
    dy = torch.ones_like(out)

    def step():
        module.zero_grad(set_to_none=False)
        module(xt).backward(dy)

    return step


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    repeats = 3 if args.quick else 7
    try:
        import torch  # noqa: F401
        have_torch = True
    except ImportError:
        have_torch = False
    print(f"forward+backward per step, 1 thread, median of {repeats}×{STEPS} steps (µs; lower is better)")
    print(f"{'layer':<12} {'batch':>5} {'trainctl':>10} {'pytorch':>10} {'speed-up':>9}")
    for batch in (32, 256):
        for name, (spec, x) in workloads(batch).items():
            ours = time_rounds(trainctl_step(spec, x), repeats)
            theirs = time_rounds(torch_step(name, spec, x), repeats) if have_torch else float("nan")
            print(f"{name:<12} {batch:>5} {ours * 1e6:>10.1f} {theirs * 1e6:>10.1f} {theirs / ours:>8.2f}×")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
