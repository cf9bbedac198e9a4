"""Where W1 b32 spends its time on the compiled path: CPU µs per batch of the whole compiled
step against each kernel alone (1 BLAS thread, FTZ on). Run: python bench/train_speed_profile.py
The gather is timed on a hot cache (rows repeat), so it understates the epoch's random-row gather.
"""
import time, numpy as np
from threadpoolctl import threadpool_limits
threadpool_limits(1)
from trainctl.nn.model import Sequential
from trainctl.kernels.fpu import FlushDenormals
rng = np.random.default_rng(0)
n, bs = 60000, 32
x = rng.standard_normal((n, 784)).astype(np.float32)
y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, n)]
m = Sequential([{"type": "dense", "units": 32, "activation": "relu", "input_shape": [784]},
                {"type": "dense", "units": 10, "activation": "softmax"}], seed=0)
m.compile(optimizer={"type": "adam", "learning_rate": 1e-3, "epsilon": 1e-7}, loss="categorical_crossentropy")
m.fit(x, y, epochs=1, batch_size=bs, steps_per_execution=1000)  # warm: compile/load
assert m.compiled_fallback is None
t = time.process_time(); m.fit(x, y, epochs=2, batch_size=bs, steps_per_execution=1000); el = (time.process_time() - t) / 2
steps = -(-n // bs)
print(f"compiled epoch: {el:.3f} CPU s  -> {n/el/1e3:.0f}k samples/CPU-s, {el/steps*1e6:.1f} us/batch")
from trainctl.kernels.batches import gather_rows
from trainctl.kernels.optimizers import adam_update
from trainctl.kernels.steps import dense_forward, dense_backward
from trainctl.kernels.losses import softmax_crossentropy_backward
order = rng.permutation(n).astype(np.int64); xb = np.empty((bs, 784), np.float32); yb = np.empty((bs, 10), np.float32)
def per(f, reps=3000):
    f(); t = time.process_time()
    for _ in range(reps): f()
    return (time.process_time() - t) / reps * 1e6
W1 = np.asarray(m.layers[0].kernel.value); b1 = np.asarray(m.layers[0].bias.value)
W2 = np.asarray(m.layers[1].kernel.value); b2 = np.asarray(m.layers[1].bias.value)
z1 = np.empty((bs, 32), np.float32); y1 = np.empty_like(z1); dz1 = np.empty_like(z1); dx1 = np.empty((bs, 784), np.float32)
z2 = np.empty((bs, 10), np.float32); y2 = np.empty_like(z2); dz2 = np.empty_like(z2); dx2 = np.empty_like(z1)
gW1 = np.empty_like(W1); gb1 = np.empty_like(b1); gW2 = np.empty_like(W2); gb2 = np.empty_like(b2)
pr = np.empty(bs, np.float32); sc = np.full(bs, 1/bs, np.float32)
flat = np.zeros(W1.size + b1.size + W2.size + b2.size, np.float32); g = rng.standard_normal(flat.size).astype(np.float32) * 1e-3
s0 = np.zeros_like(flat); s1 = np.zeros_like(flat); c = [np.float32(v) for v in (0.9, 0.999, 1e-3, 1e-7, 0.1, 0.001, 1.0, -1e-3)]
with FlushDenormals(True):
    parts = {
     "gather x+y": per(lambda: (gather_rows(x, order, 640, bs, xb), gather_rows(y, order, 640, bs, yb))),
     "dense fwd 784x32 (matmul+bias+relu)": per(lambda: dense_forward(xb, W1, b1, z1, y1, 1)),
     "dense fwd 32x10 + softmax": per(lambda: dense_forward(y1, W2, b2, z2, y2, 4)),
     "softmax-CE loss+grad": per(lambda: softmax_crossentropy_backward(8, yb, y2, sc, pr, dz2)),
     "dense bwd 32x10 (dW, dx)": per(lambda: dense_backward(y1, W2, z2, y2, dz2, dz2, dx2, gW2, gb2, 0, True)),
     "dense bwd 784x32 (dW only)": per(lambda: dense_backward(xb, W1, z1, y1, dx2, dz1, dx1, gW1, gb1, 1, False)),
     f"adam over {flat.size} weights": per(lambda: adam_update(flat, g, s0, s1, *c, np.float32(1), np.float32(0))),
    }
for k, v in parts.items(): print(f"  {k:40s} {v:6.1f} us")
print(f"  {'sum of parts':40s} {sum(parts.values()):6.1f} us  -> bound {bs/sum(parts.values())*1e3:.0f}k samples/s")
