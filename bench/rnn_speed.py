"""Recurrent training throughput: trainctl vs PyTorch eager (nn.LSTM / nn.GRU) vs JAX jit, in one run.

Workload: sequences of 50 steps × 16 features → LSTM (or GRU) 64 units → dense 1, MSE, Adam,
4,096 samples per epoch, batch 32 and 128, 1 thread. Each (framework, row) runs in TRIALS
fresh processes, interleaved, and the fastest process counts; inside a process one warm-up
epoch (compilation, caches), then the median of REPEATS epochs. Samples per second of process
CPU time (one thread each, so a loaded machine's time-slicing does not count), and trainctl ÷ peer.

Two ways to run the time loop are measured for trainctl, as issue 11 asks before choosing:
  trainctl          the loop compiled per cell (numba, np.dot per step into a buffer)
  numpy-steps       the same LSTM step by step from Python: one numpy matmul per step for the
                    recurrent product and numpy element-wise gates (the alternative design)
two rows with TF.js's default gates (hard_sigmoid, and GRU's reset before the product), the
pair linked into the compiled training loop (issue 13):
  trainctl-tfjs     Python drives each batch (the `trainctl` row's path)
  trainctl-loop     many batches per compiled call (steps_per_execution, kernels/recurrent_steps.py)
and the `trainctl` row's gates (PyTorch's) on the compiled loop, which calls that pair's time
loops at their addresses (kernels/recurrent_calls.py):
  loop-sigmoid      many batches per compiled call, sigmoid gates (GRU: reset after the product)

    python bench/rnn_speed.py            # the table (a few minutes)
    python bench/rnn_speed.py --quick    # 1 trial, 2 repeats
    python bench/rnn_speed.py --profile lstm 32   # where trainctl's training step spends its time
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

STEPS, FEATURES, UNITS, N_SAMPLES = 50, 16, 64, 4096
ROWS = [("lstm", 32), ("lstm", 128), ("gru", 32), ("gru", 128)]


def make_data():
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.standard_normal((N_SAMPLES, STEPS, FEATURES), dtype=np.float32)
    y = np.tanh(x[:, -10:, :4].sum(axis=(1, 2)) / 6.0)[:, None].astype(np.float32)
    return x, y


def _epochs(run_epoch, repeats):
    """Samples per second of this process's CPU time (1 thread: on a shared, loaded machine
    the wall clock also counts the time other processes held the core)."""
    run_epoch()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.process_time()
        run_epoch()
        times.append(time.process_time() - start)
    return N_SAMPLES / statistics.median(times)


def time_trainctl(cell, batch, repeats, tfjs_gates=False, loop=False):
    x, y = make_data()
    model = _trainctl_model(cell, batch, tfjs_gates)
    options = {"jit_compile": True, "steps_per_execution": 64} if loop else {"jit_compile": False}

    def epoch():
        model.fit(x, y, epochs=1, batch_size=batch, shuffle=True, verbose=0, **options)
        if loop and model.compiled_fallback is not None:
            raise RuntimeError(f"the compiled loop did not run: {model.compiled_fallback}")

    return _epochs(epoch, repeats)


def time_numpy_steps(cell, batch, repeats):
    """The alternative design: Python drives the steps, numpy does each step's math."""
    import numpy as np

    if cell != "lstm":
        return None
    x, y = make_data()
    rng = np.random.default_rng(0)
    w = rng.standard_normal((FEATURES, 4 * UNITS), dtype=np.float32) * 0.1
    u = rng.standard_normal((UNITS, 4 * UNITS), dtype=np.float32) * 0.1
    b = np.zeros(4 * UNITS, np.float32)
    wd = rng.standard_normal((UNITS, 1), dtype=np.float32) * 0.1
    params = [w, u, b, wd]
    slots = [(np.zeros_like(p), np.zeros_like(p)) for p in params]

    def sigmoid(z):
        return 1.0 / (1.0 + np.exp(-z))

    def step(xb, yb, t_adam):
        n = xb.shape[0]
        xw = (xb.reshape(-1, FEATURES) @ w).reshape(n, STEPS, -1) + b
        h, c = np.zeros((n, UNITS), np.float32), np.zeros((n, UNITS), np.float32)
        cache = []
        for t in range(STEPS):
            z = xw[:, t] + h @ u
            i, f, g, o = sigmoid(z[:, :UNITS]), sigmoid(z[:, UNITS:2 * UNITS]), np.tanh(z[:, 2 * UNITS:3 * UNITS]), sigmoid(z[:, 3 * UNITS:])
            c_new = f * c + i * g
            tc = np.tanh(c_new)
            cache.append((h, c, i, f, g, o, tc))
            h, c = o * tc, c_new
        pred = h @ wd
        dpred = 2.0 * (pred - yb) / n
        grads = [np.zeros_like(p) for p in params]
        grads[3] = h.T @ dpred
        dh, dc = dpred @ wd.T, np.zeros_like(c)
        dxw = np.empty_like(xw)
        for t in range(STEPS - 1, -1, -1):
            h_prev, c_prev, i, f, g, o, tc = cache[t]
            dct = dc + dh * o * (1 - tc * tc)
            dz = np.concatenate([dct * g * i * (1 - i), dct * c_prev * f * (1 - f), dct * i * (1 - g * g),
                                 dh * tc * o * (1 - o)], axis=1)
            dxw[:, t] = dz
            grads[1] += h_prev.T @ dz
            dh, dc = dz @ u.T, dct * f
        flat = dxw.reshape(-1, 4 * UNITS)
        grads[0] = xb.reshape(-1, FEATURES).T @ flat
        grads[2] = flat.sum(axis=0)
        for p, g_, (m, v) in zip(params, grads, slots):
            m *= 0.9
            m += 0.1 * g_
            v *= 0.999
            v += 0.001 * g_ * g_
            p -= 0.001 * (m / (1 - 0.9 ** t_adam)) / (np.sqrt(v / (1 - 0.999 ** t_adam)) + 1e-7)

    def epoch():
        order = rng.permutation(N_SAMPLES)
        for k, start in enumerate(range(0, N_SAMPLES, batch)):
            index = order[start:start + batch]
            step(x[index], y[index], k + 1)

    return _epochs(epoch, repeats)


def time_torch(cell, batch, repeats):
    import torch

    torch.set_num_threads(1)
    x, y = make_data()
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = (torch.nn.LSTM if cell == "lstm" else torch.nn.GRU)(FEATURES, UNITS, batch_first=True)
            self.head = torch.nn.Linear(UNITS, 1)

        def forward(self, inputs):
            out, _ = self.rnn(inputs)
            return self.head(out[:, -1])

    net = Net()
    optimizer = torch.optim.Adam(net.parameters(), lr=0.001, foreach=True)

    def epoch():
        order = torch.randperm(N_SAMPLES)
        for start in range(0, N_SAMPLES, batch):
            index = order[start:start + batch]
            optimizer.zero_grad()
            loss = torch.mean((net(xt[index]) - yt[index]) ** 2)
            loss.backward()
            optimizer.step()

    return _epochs(epoch, repeats)


def time_jax(cell, batch, repeats):
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax

    x, y = make_data()
    key = jax.random.PRNGKey(0)
    gates = 4 if cell == "lstm" else 3
    k1, k2, k3 = jax.random.split(key, 3)
    params = {"w": jax.random.normal(k1, (FEATURES, gates * UNITS)) * 0.1,
              "u": jax.random.normal(k2, (UNITS, gates * UNITS)) * 0.1,
              "b": jnp.zeros(gates * UNITS), "wd": jax.random.normal(k3, (UNITS, 1)) * 0.1, "bd": jnp.zeros(1)}

    def forward(p, xb):
        xw = jnp.einsum("ntf,fg->tng", xb, p["w"]) + p["b"]
        n = xb.shape[0]

        def lstm_step(carry, xw_t):
            h, c = carry
            z = xw_t + h @ p["u"]
            i, f, g, o = jnp.split(z, 4, axis=1)
            c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
            h = jax.nn.sigmoid(o) * jnp.tanh(c)
            return (h, c), None

        def gru_step(carry, xw_t):
            h, _ = carry
            rec = h @ p["u"]
            z = jax.nn.sigmoid(xw_t[:, :UNITS] + rec[:, :UNITS])
            r = jax.nn.sigmoid(xw_t[:, UNITS:2 * UNITS] + rec[:, UNITS:2 * UNITS])
            hh = jnp.tanh(xw_t[:, 2 * UNITS:] + r * rec[:, 2 * UNITS:])
            return (z * h + (1 - z) * hh, h), None

        zeros = jnp.zeros((n, UNITS))
        (h, _), _ = jax.lax.scan(lstm_step if cell == "lstm" else gru_step, (zeros, zeros), xw)
        return h @ p["wd"] + p["bd"]

    optimizer = optax.adam(0.001, eps=1e-7)
    state = optimizer.init(params)

    @jax.jit
    def train_step(p, s, xb, yb):
        loss, grads = jax.value_and_grad(lambda q: jnp.mean((forward(q, xb) - yb) ** 2))(p)
        updates, s = optimizer.update(grads, s)
        return optax.apply_updates(p, updates), s, loss

    rng = np.random.default_rng(0)
    holder = {"p": params, "s": state}

    def epoch():
        order = rng.permutation(N_SAMPLES)
        for start in range(0, N_SAMPLES - batch + 1, batch):  # whole batches: one compiled shape
            index = order[start:start + batch]
            holder["p"], holder["s"], loss = train_step(holder["p"], holder["s"], x[index], y[index])
        loss.block_until_ready()

    return _epochs(epoch, repeats)


def _trainctl_model(cell, batch, tfjs_gates=False):
    from trainctl.nn.model import Sequential

    # recurrent_activation sigmoid: the same function PyTorch and JAX compute; GRU reset_after
    # as PyTorch's GRU (tfjs_gates: TF.js's defaults instead)
    spec = {"type": cell, "units": UNITS, "input_shape": [STEPS, FEATURES]}
    if not tfjs_gates:
        spec["recurrent_activation"] = "sigmoid"
    if cell == "gru" and not tfjs_gates:
        spec["reset_after"] = True
    model = Sequential([spec, {"type": "dense", "units": 1}], seed=0)
    model.compile(optimizer={"type": "adam", "learning_rate": 0.001}, loss="mean_squared_error")
    return model


def profile_trainctl(cell, batch, epochs=3):
    """CPU µs per batch of trainctl's training step, split into the recurrent layer's parts
    (time loop kernels, input projection and weight-gradient matmuls, the Python around them)
    and the rest of the step (data, dense head, loss, optimizer, loop). Timers wrap the methods
    of one model (each costs ~1 µs, included in its parent)."""
    import numpy as np

    model = _trainctl_model(cell, batch)
    x, y = make_data()
    model.fit(x, y, epochs=1, batch_size=batch, shuffle=True, verbose=0)  # compile, allocate
    rnn, head = model.layers
    spent: dict[str, int] = {}

    def timed(label, function):
        def wrapper(*args, **kwargs):
            start = time.process_time_ns()
            try:
                return function(*args, **kwargs)
            finally:
                spent[label] = spent.get(label, 0) + time.process_time_ns() - start
        return wrapper

    def matmuls(label, function):
        """Count numpy matmuls made inside `function` (the layer's projection / gradients)."""
        def wrapper(*args, **kwargs):
            original = np.matmul

            def counted(*a, **k):
                start = time.process_time_ns()
                try:
                    return original(*a, **k)
                finally:
                    spent[label] = spent.get(label, 0) + time.process_time_ns() - start
            np.matmul = counted
            try:
                return function(*args, **kwargs)
            finally:
                np.matmul = original
        return wrapper

    rnn.run_forward = timed("rnn forward: time-loop kernel", rnn.run_forward)
    rnn.run_backward = timed("rnn backward: BPTT kernel", rnn.run_backward)
    rnn.recurrent_grads = timed("rnn backward: recurrent-kernel grad", rnn.recurrent_grads)
    rnn.forward = timed("rnn forward (all)", matmuls("rnn forward: input projection matmul", rnn.forward))
    rnn.backward = timed("rnn backward (all)", matmuls("rnn backward: numpy matmuls", rnn.backward))
    head.forward = timed("dense head forward", head.forward)
    head.backward = timed("dense head backward", head.backward)
    head.backward_from_preactivation = timed("dense head backward", head.backward_from_preactivation)
    model.optimizer.apply = timed("optimizer", model.optimizer.apply)
    start = time.process_time_ns()
    model.fit(x, y, epochs=epochs, batch_size=batch, shuffle=True, verbose=0)
    total = time.process_time_ns() - start
    batches = epochs * -(-N_SAMPLES // batch)
    us = {label: value / batches / 1000 for label, value in spent.items()}
    fwd, bwd = us["rnn forward (all)"], us["rnn backward (all)"]
    rows = [
        ("rnn forward: time-loop kernel", us["rnn forward: time-loop kernel"]),
        ("rnn forward: input projection matmul", us.get("rnn forward: input projection matmul", 0.0)),
        ("rnn forward: other Python/numpy", fwd - us["rnn forward: time-loop kernel"]
         - us.get("rnn forward: input projection matmul", 0.0)),
        ("rnn backward: BPTT kernel", us["rnn backward: BPTT kernel"]),
        ("rnn backward: numpy matmuls (dW, dU, dx)", us.get("rnn backward: numpy matmuls", 0.0)),
        ("rnn backward: other Python/numpy", bwd - us["rnn backward: BPTT kernel"]
         - us.get("rnn backward: numpy matmuls", 0.0)),
        ("dense head forward+backward", us["dense head forward"] + us["dense head backward"]),
        ("optimizer", us["optimizer"]),
    ]
    rest = total / batches / 1000 - sum(value for _, value in rows)
    rows.append(("rest of the step (data, loss, loop)", rest))
    print(f"trainctl {cell} b{batch}: CPU µs per batch over {batches} batches "
          f"({N_SAMPLES * epochs / (total / 1e9):,.0f} samples per CPU-second with the timers)")
    for label, value in rows:
        print(f"  {label:<42}{value:>9.1f}")
    print(f"  {'total':<42}{total / batches / 1000:>9.1f}")


FRAMEWORKS = {"trainctl": time_trainctl, "numpy-steps": time_numpy_steps, "pytorch": time_torch, "jax": time_jax,
              "trainctl-tfjs": lambda cell, batch, repeats: time_trainctl(cell, batch, repeats, tfjs_gates=True),
              "trainctl-loop": lambda cell, batch, repeats: time_trainctl(cell, batch, repeats, True, loop=True),
              "loop-sigmoid": lambda cell, batch, repeats: time_trainctl(cell, batch, repeats, loop=True)}


def child(framework, cell, batch, repeats):
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        try:
            value = FRAMEWORKS[framework](cell, batch, repeats)
        except ImportError as error:
            value, note = None, f"not installed ({error.name})"
        else:
            note = ""
    print(json.dumps({"value": value, "note": note}))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--child", nargs=4, metavar=("FRAMEWORK", "CELL", "BATCH", "REPEATS"))
    parser.add_argument("--profile", nargs=2, metavar=("CELL", "BATCH"))
    args = parser.parse_args()
    if args.profile:
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1):
            profile_trainctl(args.profile[0], int(args.profile[1]))
        return
    if args.child:
        framework, cell, batch, repeats = args.child
        child(framework, cell, int(batch), int(repeats))
        return
    trials, repeats = (1, 2) if args.quick else (2, 3)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1",
           "JAX_PLATFORMS": "cpu"}
    best: dict[tuple, float | None] = {}
    notes: dict[str, str] = {}
    for _ in range(trials):  # interleaved: every framework once per round
        for cell, batch in ROWS:
            for framework in FRAMEWORKS:
                out = subprocess.run([sys.executable, __file__, "--child", framework, cell, str(batch), str(repeats)],
                                     capture_output=True, text=True, env=env)
                try:
                    result = json.loads(out.stdout.strip().splitlines()[-1])
                except (IndexError, json.JSONDecodeError):
                    result = {"value": None, "note": (out.stderr.strip().splitlines() or ["failed"])[-1][:80]}
                if result["note"]:
                    notes[framework] = result["note"]
                key = (framework, cell, batch)
                if result["value"] is not None:
                    best[key] = max(best.get(key) or 0.0, result["value"])
                else:
                    best.setdefault(key, None)
    print(f"samples per CPU-second, {STEPS} steps x {FEATURES} features, {UNITS} units, Adam, 1 thread; best of {trials} "
          f"fresh processes, median of {repeats} epochs of {N_SAMPLES}")
    header = (f"{'row':<10}" + "".join(f"{f:>14}" for f in FRAMEWORKS) + f"{'÷ pytorch':>11}{'÷ jax':>9}"
              + f"{'loop ÷ tfjs':>13}{'loop ÷ pytorch':>16}{'sigmoid loop ÷ pytorch':>24}")
    print(header)
    for cell, batch in ROWS:
        values = [best.get((f, cell, batch)) for f in FRAMEWORKS]
        cells = "".join(f"{v:>14,.0f}" if v else f"{'—':>14}" for v in values)
        ours, torch_, jax_, tfjs, loop, sigmoid_loop = values[0], values[2], values[3], values[4], values[5], values[6]
        ratio = lambda a, b: f"{a / b:.2f}x" if a and b else "—"  # noqa: E731
        print(f"{cell + ' b' + str(batch):<10}{cells}{ratio(ours, torch_):>11}{ratio(ours, jax_):>9}"
              f"{ratio(loop, tfjs):>13}{ratio(loop, torch_):>16}{ratio(sigmoid_loop, torch_):>24}")
    for framework, note in notes.items():
        print(f"  {framework}: {note}")


if __name__ == "__main__":
    main()
