"""The compiled loop's designs, measured side by side (issue 13 item 1: "a plan of layer
codes and buffers, or a function generated per architecture and cached: measure both").

  plan       what trainctl ships: kernels/plan_steps.train_plan_steps, one function compiled
             once per dtype for every Dense stack; per layer an int kind, an activation code
             read at run time and buffers in numba typed lists.
  generated  a function written for one architecture: the layer loop unrolled, each layer's
             arrays passed as arguments (no typed lists), its activation compiled in
             (steps.dense_kernels_for), the loss, metric and optimizer called directly instead
             of through their code switches. Its source goes to a file in the cache directory
             so numba caches it like any kernel; a new architecture means a new function.
  unrolled   the generated function calling the plan loop's generic kernels (activation,
             metric and optimizer codes read at run time): what unrolling and plain array
             arguments buy without the specialisation.

All run inside the same Model.fit (the generated ones replace CompiledSteps._launch_dense),
so the gather, chunking and callbacks are the same; the bench first checks that they train
the same bits. Then, each in fresh processes with a fresh numba cache, interleaved:
  first compile   CPU-s of the first fit that needs the loop (W1), then of a second
                  architecture in the same process (tanh hidden layers: the plan reuses its
                  loop, the generated design compiles another function)
  cached load     CPU-s of that first fit in a new process over the filled cache
  speed           samples per CPU-second, median of 3 epochs after a warm-up, per row

    python bench/loop_design.py                 # W1/32, W1/512, W2/128; 2 trials (~6 min)
    python bench/loop_design.py --rows W1/32 --trials 1
The generated design covers what this measurement needs (Dense stacks, fused softmax +
categorical cross-entropy, accuracy, Adam without clipnorm): it is a bench, not a product path.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

N_FEATURES, N_CLASSES = 784, 10
WORKLOADS = {"W1": [32], "W2": [256, 256]}
SAMPLES = {"W1": 60_000, "W2": 20_000}


# -- the generated design ---------------------------------------------------------------------

def generated_source(codes: list[int], linear_code: int, metric_codes: list[int], specialised: bool = True) -> str:
    """Module source of one architecture's loop: Dense layers with activation `codes` (the last
    fused with softmax cross-entropy, so its backward is linear, as train_plan_steps does).
    specialised=False (the "unrolled" design) calls the plan loop's own generic kernels, which
    read the activation, metric and optimizer codes at run time: what unrolling alone buys."""
    n = len(codes)
    lines = [
        "import math",
        "import numpy as np",
        "from trainctl.jit import njit",
        "from trainctl.kernels.activations import activation_backward_bias_grad_inline, bias_activation_forward_inline",
        "from trainctl.kernels.batches import gather_rows",
        "from trainctl.kernels.blas import gemm",
        "from trainctl.kernels.losses import softmax_crossentropy_backward",
        "from trainctl.kernels.metrics import _binary_accuracy, _categorical_accuracy, metric_value",
        "from trainctl.kernels.optimizers import adam_update",
        "from trainctl.kernels.steps import _update, batch_loss, dense_backward, dense_forward",
        "",
    ]
    # Module-level kernels with the code written in (steps._dense_kernels' bodies; the inlined
    # activation prunes the other codes): numba's cache cannot reload a function that calls
    # steps.dense_kernels_for's closures (it records them as module '<dynamic>').
    for i, code in enumerate(codes):
        backward_code = linear_code if i == n - 1 else code
        if specialised:
            lines += ["@njit", f"def forward_{i}(x, kernel, bias, z, y, code):", "    gemm(x, kernel, z, False, False)",
                      f"    bias_activation_forward_inline(z, bias, y, {code})", "",
                      "@njit", f"def backward_{i}(x, kernel, z, y, dy, dz, dx, kernel_grad, bias_grad, code, need_dx):",
                      f"    activation_backward_bias_grad_inline(z, y, dy, dz, bias_grad, {backward_code})",
                      "    gemm(x, dz, kernel_grad, True, False)", "    if need_dx:", "        gemm(dz, kernel, dx, False, True)", ""]
        else:
            lines += [f"forward_{i} = dense_forward", f"backward_{i} = dense_backward"]
    from trainctl.kernels.codes import (
        BINARY_ACCURACY,
        CATEGORICAL_ACCURACY,
        SPARSE_CATEGORICAL_ACCURACY,
    )

    accuracies = {BINARY_ACCURACY: "_binary_accuracy(y_true, y_pred)",  # metrics.metric_value's branches
                  CATEGORICAL_ACCURACY: "_categorical_accuracy(y_true, y_pred, False)",
                  SPARSE_CATEGORICAL_ACCURACY: "_categorical_accuracy(y_true, y_pred, True)"}
    for m, code in enumerate(metric_codes):
        if specialised and code in accuracies:
            lines += ["@njit", f"def metric_{m}(code, y_true, y_pred):", f"    return {accuracies[code]}", ""]
        else:
            lines.append(f"metric_{m} = metric_value")
    update = ("adam_update(flat_value, flat_grad, m, v, c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7], one, clipvalue)"
              if specialised else "_update(2, flat_value, flat_grad, m, v, v, c, False, clipvalue, one)")
    layer_args = ", ".join(f"k{i}, b{i}, kg{i}, bg{i}, z{i}, y{i}, dz{i}, dx{i}" for i in range(n))
    body = [
        "@njit",
        "def generated_steps(x_source, y_source, order, first_sample, n_samples, batch_size, n_steps, x_buf, y_buf,",
        "                    row_scale, per_row, loss_grad, loss_code, metric_codes, values, totals, flat_value,",
        f"                    flat_grad, m, v, constants, clipvalue, one, {layer_args}):",
        "    for step in range(n_steps):",
        "        start = first_sample + step * batch_size",
        "        if start >= n_samples:",
        "            return step",
        "        count = min(batch_size, n_samples - start)",
        "        gather_rows(x_source, order, start, count, x_buf)",
        "        gather_rows(y_source, order, start, count, y_buf)",
        "        scale = row_scale[:count]",
        "        for i in range(count):",
        "            scale[i] = 1.0 / count",
    ]
    for i in range(n):
        x = "x_buf[:count]" if i == 0 else f"y{i - 1}[:count]"
        body.append(f"        forward_{i}({x}, k{i}, b{i}, z{i}[:count], y{i}[:count], {codes[i]})")
    body += [
        f"        out = y{n - 1}[:count]",
        "        yb = y_buf[:count]",
        "        grad = loss_grad[:count]",
        "        softmax_crossentropy_backward(loss_code, yb, out, scale, per_row[:count], grad)",
        "        loss_value = np.float64(batch_loss(per_row[:count], scale))",
        "        values[step, 0] = loss_value",
    ]
    for m in range(len(metric_codes)):
        body.append(f"        values[step, {1 + m}] = metric_{m}(metric_codes[{m}], yb, out)")
    for i in range(n - 1, -1, -1):
        x = "x_buf[:count]" if i == 0 else f"y{i - 1}[:count]"
        dy = "grad" if i == n - 1 else f"dx{i + 1}[:count]"
        code = linear_code if i == n - 1 else codes[i]
        body.append(f"        backward_{i}({x}, k{i}, z{i}[:count], y{i}[:count], {dy}, dz{i}[:count], dx{i}[:count], "
                    f"kg{i}, bg{i}, {code}, {i > 0})")
    body += [
        "        c = constants[step]",
        f"        {update}",
        "        for j in range(values.shape[1]):",
        "            totals[j] += values[step, j] * count",
        "        if not math.isfinite(loss_value):",
        "            return step + 1",
        "    return n_steps",
    ]
    return "\n".join(lines + ["", ""] + body) + "\n"


def use_generated_loops(directory: str, specialised: bool = True) -> None:
    """Replace CompiledSteps._launch_dense with the architecture's generated loop, written to
    `directory` (one module per architecture, imported from its file so numba can cache it)."""
    from trainctl.kernels import steps as steps_module
    from trainctl.train.compiled import CompiledSteps

    modules: dict[str, object] = {}

    def launch(self, order, first_sample, n_steps, constants, flag, totals):
        plan = self.plan
        assert (self.loss_mode == steps_module.LOSS_SOFTMAX_FUSED and self.opt_code == 2 and not self.has_weights
                and self.clipnorm == 0 and not plan.dropouts and not plan.regularized), "outside this bench's design"
        codes = [int(c) for c in plan.codes]
        name = ("generated_" if specialised else "unrolled_") + "_".join(map(str, codes)) + "_m" + "_".join(
            map(str, self.metric_codes))
        module = modules.get(name)
        if module is None:
            path = os.path.join(directory, name + ".py")
            source = generated_source(codes, self.linear_code, [int(c) for c in self.metric_codes], specialised)
            written = None
            if os.path.exists(path):
                with open(path) as handle:
                    written = handle.read()
            if written != source:  # a rewrite would void numba's cache of it
                with open(path, "w") as handle:
                    handle.write(source)
            spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module  # numba's cached entry names its module: loading it imports that
            spec.loader.exec_module(module)
            modules[name] = module
        layers = []
        for i in range(len(codes)):
            layers += [plan.kernels[i], plan.biases[i], plan.kernel_grads[i], plan.bias_grads[i], plan.zs[i],
                       plan.ys[i], plan.dzs[i], plan.dxs[i]]
        trainer = self.trainer
        return module.generated_steps(
            self.x_source, self.y_source, order, first_sample, self.x_source.shape[0], self.batch_size, n_steps,
            self.x_buf, self.y_buf, trainer._scale, trainer._per_row, trainer._grad, self.loss_code,
            self.metric_codes, self.values, totals, self.flat_value, self.flat_grad, self.slots[0], self.slots[1],
            constants, self.clipvalue, self.unit[1], *layers)

    CompiledSteps._launch_dense = launch


# -- one process's measurement ------------------------------------------------------------------

def _data(n: int):
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.random((n, N_FEATURES), dtype=np.float32)
    w = rng.standard_normal((N_FEATURES, N_CLASSES)).astype(np.float32)
    labels = (x @ w).argmax(axis=1)
    return x, np.eye(N_CLASSES, dtype=np.float32)[labels]


def _model(hidden, activation="relu"):
    from trainctl.nn.model import Sequential

    layers = [{"type": "dense", "units": hidden[0], "activation": activation, "input_shape": [N_FEATURES]}]
    layers += [{"type": "dense", "units": h, "activation": activation} for h in hidden[1:]]
    layers += [{"type": "dense", "units": N_CLASSES, "activation": "softmax"}]
    model = Sequential(layers, seed=0)
    model.compile(optimizer={"type": "adam", "learning_rate": 0.001}, loss="categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def _cpu() -> float:
    return time.process_time()


def worker(design: str, task: str, rows, repeats: int, directory: str) -> dict:
    from trainctl.train.runtime import set_threads

    set_threads(1)
    if design != "plan":
        use_generated_loops(directory, specialised=design == "generated")
    x, y = _data(max(SAMPLES.values()))
    if task == "compile":  # the first fit that needs the loop, then a second architecture
        started = _cpu()
        _model([32]).fit(x[:256], y[:256], epochs=1, batch_size=32, steps_per_execution=4, verbose=0)
        first = _cpu() - started
        started = _cpu()
        _model([16, 16], "tanh").fit(x[:256], y[:256], epochs=1, batch_size=32, steps_per_execution=4, verbose=0)
        return {"first_fit": first, "second_architecture": _cpu() - started}
    if task == "bits":
        model = _model([32])
        model.fit(x[:2000], y[:2000], epochs=2, batch_size=32, shuffle=True, steps_per_execution=16, verbose=0)
        import hashlib

        return {"weights": hashlib.sha256(b"".join(w.value.tobytes() for w in model.weights)).hexdigest()}
    from trainctl.train.callbacks import Callback

    class CpuTimer(Callback):
        def __init__(self):
            super().__init__()
            self.cpu = []

        def on_epoch_begin(self, epoch, logs=None):
            self.started = _cpu()

        def on_epoch_end(self, epoch, logs=None):
            self.cpu.append(_cpu() - self.started)

    _model([4]).fit(x[:256], y[:256], epochs=1, batch_size=32, steps_per_execution=4, verbose=0)  # load the loop
    results = {}
    for workload, batch_size in rows:
        n = SAMPLES[workload]
        timer = CpuTimer()
        model = _model(WORKLOADS[workload])
        model.fit(x[:n], y[:n], epochs=repeats + 1, batch_size=batch_size, shuffle=True, callbacks=[timer],
                  steps_per_execution=4096, verbose=0)
        assert model.compiled_fallback is None, model.compiled_fallback
        results[f"{workload}/{batch_size}"] = n / statistics.median(timer.cpu[1:])
    return results


def run(design: str, task: str, rows, repeats: int, cache: str, directory: str) -> dict:
    env = dict(os.environ, TRAINCTL_CACHE_DIR=cache, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    env.pop("NUMBA_CACHE_DIR", None)
    code = (f"import sys, json; sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r}); import loop_design; "
            f"print(json.dumps(loop_design.worker({design!r}, {task!r}, {rows!r}, {repeats}, {directory!r})))")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{design} {task} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", nargs="+", default=["W1/32", "W1/512", "W2/128"])
    parser.add_argument("--trials", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rows = [(r.split("/")[0], int(r.split("/")[1])) for r in args.rows]
    designs = ("plan", "generated", "unrolled")
    with tempfile.TemporaryDirectory(prefix="loop-design-") as root:
        dirs = {d: os.path.join(root, d) for d in designs}
        for directory in dirs.values():
            os.makedirs(directory)
        bits = {d: run(d, "bits", rows, 0, os.path.join(dirs[d], "bits-cache"), dirs[d])["weights"] for d in designs}
        for design in designs[1:]:
            print(f"{design}: the same weights as the plan after 2 epochs of W1/32 (sha256): "
                  f"{'yes' if bits['plan'] == bits[design] else 'NO'}")
        compiles: dict[str, list] = {d: [] for d in designs}
        loads: dict[str, list] = {d: [] for d in designs}
        speeds: dict[str, dict] = {d: {} for d in designs}
        for trial in range(args.trials):
            for design in designs:  # interleaved: a drift in the machine reaches both alike
                cache = os.path.join(dirs[design], f"cache-{trial}")
                compiles[design].append(run(design, "compile", rows, 0, cache, dirs[design]))
                loads[design].append(run(design, "compile", rows, 0, cache, dirs[design]))
                for key, value in run(design, "speed", rows, args.repeats, cache, dirs[design]).items():
                    speeds[design][key] = max(speeds[design].get(key, 0.0), value)
    best = {d: {k: min(c[k] for c in compiles[d]) for k in compiles[d][0]} for d in designs}
    loaded = {d: min(c["first_fit"] for c in loads[d]) for d in designs}
    print(f"\nfirst compile and load, CPU-s (best of {args.trials} fresh caches)")
    print(f"{'design':>10} {'first fit, cold':>16} {'2nd architecture':>17} {'first fit, cached':>18}")
    for d in designs:
        print(f"{d:>10} {best[d]['first_fit']:>16.2f} {best[d]['second_architecture']:>17.2f} {loaded[d]:>18.2f}")
    print(f"\nsamples per CPU-second (best of {args.trials} processes, median of {args.repeats} epochs)")
    print(f"{'row':>8} {'plan':>10} {'generated':>10} {'unrolled':>10} {'gen÷plan':>9} {'unr÷plan':>9}")
    for workload, batch_size in rows:
        key = f"{workload}/{batch_size}"
        plan, generated, unrolled = (speeds[d][key] for d in designs)
        print(f"{key:>8} {plan:>10,.0f} {generated:>10,.0f} {unrolled:>10,.0f} {generated / plan:>9.3f} "
              f"{unrolled / plan:>9.3f}")


if __name__ == "__main__":
    main()
