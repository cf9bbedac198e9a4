"""Training throughput: trainctl vs PyTorch eager vs JAX on the CPU, in one run, against the
matmul bound.

Workloads (Adam lr 1e-3 eps 1e-7, softmax + categorical cross-entropy, a learnable task):
  W1    784 → 32 relu → 10 softmax          (the TF.js guide's model)  batch 32, 128, 512, 2048
  W2    784 → 256 relu → 256 relu → 10      batch 128, 512
  sweep (batch 128): depth D4/D8 = 4/8 hidden layers of 256; width H128..H1024 = 2 hidden layers
        of that width. D8 also prints its first and last epoch time: an epoch that slows as
        training goes on is denormal arithmetic.
Peers: PyTorch eager (Adam foreach, index-gathered batches), JAX jitted step (one jit call per
batch, gather inside), JAX epoch (the whole epoch in one jitted lax.scan). "bound" is the
time of each step's needed matrix products alone (x@W, x.T@dz, dz@W.T per layer, no dx for the
first) at the same thread count, numpy matmul or trainctl's split products (kernels/blas.py),
whichever is faster: no trainer on this BLAS can beat it.

Each row: a warm-up epoch, then the median of REPEATS timed epochs. Each (framework, threads)
runs in a fresh process (thread counts are fixed when BLAS loads) pinned to that many cores
(`--kinds ... unpinned` adds trainctl unpinned, as a user runs it), TRIALS processes each,
interleaved (trainctl, torch, jax, bound, trainctl, ...), and the fastest process counts per row.
The whole table is printed for 1 and 2 threads, quiet, then again beside a busy background
process that keeps one core spinning.

    python bench/train_speed.py                  # everything (~15-25 min on 2 cores)
    python bench/train_speed.py --quick          # W1 b32/b512, W2 b512, D8; 1 trial
    python bench/train_speed.py --rows W1/32 D8/128 --threads 1 --no-busy
jax and optax are bench-only dependencies (pip install -e .[bench]); a missing peer prints n/a.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

N_SAMPLES = 60_000
N_FEATURES, N_CLASSES = 784, 10
WORKLOADS = {
    "W1": [32], "W2": [256, 256],
    "D4": [256] * 4, "D8": [256] * 8,
    "H128": [128, 128], "H512": [512, 512], "H1024": [1024, 1024],
}
ROWS = [("W1", 32), ("W1", 128), ("W1", 512), ("W1", 2048), ("W2", 128), ("W2", 512),
        ("D4", 128), ("D8", 128), ("H128", 128), ("H512", 128), ("H1024", 128)]
# wide rows train on fewer samples per epoch so the sweep stays minutes, not an hour
SAMPLES = {"H512": 20_000, "H1024": 10_000, "D8": 30_000}
KINDS = ("trainctl", "torch", "jax_step", "jax_scan", "bound")
BASELINE_TREE: str | None = None  # --baseline-tree: an older trainctl checkout timed as "before"


def n_samples(workload: str) -> int:
    return SAMPLES.get(workload, N_SAMPLES)


def make_data(seed: int = 0):
    """A learnable task: labels from a fixed random teacher network."""
    import numpy as np

    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N_SAMPLES, N_FEATURES), dtype=np.float32)
    hidden = np.maximum(x @ rng.standard_normal((N_FEATURES, 32), dtype=np.float32) / 28.0, 0)
    labels = np.argmax(hidden @ rng.standard_normal((32, N_CLASSES), dtype=np.float32), axis=1)
    y = np.eye(N_CLASSES, dtype=np.float32)[labels]
    return x, y, labels


def _timed_epochs(run_epoch, repeats: int) -> dict:
    run_epoch(0)  # warm-up: compilation, caches
    times, cpu = [], []
    for repeat in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        extra = run_epoch(repeat + 1)
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    result = {"seconds": statistics.median(times), "first": times[0], "last": times[-1],
              "cpu_seconds": statistics.median(cpu)}
    if isinstance(extra, dict):
        result.update(extra)
    return result


def time_trainctl(rows, repeats, threads):
    try:
        from trainctl.nn.model import Sequential
    except ImportError:  # a --baseline-tree from before the package layout
        from trainctl.model import Sequential
    try:
        from trainctl.train.runtime import set_threads
        set_threads(threads)
    except ImportError:  # before trainctl managed its threads: the environment variables do it
        pass

    x_all, y_all, _ = make_data()
    _prime_the_compiled_loop(Sequential, x_all, y_all)
    results = {}
    for workload, batch_size in rows:
        n = n_samples(workload)
        x, y = x_all[:n], y_all[:n]
        hidden = WORKLOADS[workload]
        layers = [{"type": "dense", "units": hidden[0], "activation": "relu", "input_shape": [N_FEATURES]}]
        layers += [{"type": "dense", "units": h, "activation": "relu"} for h in hidden[1:]]
        layers += [{"type": "dense", "units": N_CLASSES, "activation": "softmax"}]
        model = Sequential(layers, seed=0)
        model.compile(optimizer={"type": "adam", "learning_rate": 0.001}, loss="categorical_crossentropy",
                      metrics=["accuracy"])
        # one fit, as a user runs it (the first epoch is the warm-up); epochs timed by a callback
        timer = _EpochTimer()
        history = model.fit(x, y, epochs=repeats + 1, batch_size=batch_size, shuffle=True, callbacks=[timer])
        times = timer.seconds[1:]
        results[f"{workload}/{batch_size}"] = {"seconds": statistics.median(times), "first": times[0],
                                               "cpu_seconds": statistics.median(timer.cpu[1:]),
                                               "last": times[-1], "accuracy": history.history["accuracy"][-1],
                                               "path": getattr(model, "compiled_fallback", "n/a") or "compiled"}
    return results


def _prime_the_compiled_loop(Sequential, x, y):
    """Compile (first run on a machine) or load the compiled loop before the timed fits, as any
    user's machine has it after its first explicit or long fit: `auto` does not compile it for
    fits this short (train/compiled.py compile_decision). A small model of the same kind (the
    loop is one function for every Dense stack), on the first 256 samples."""
    model = Sequential([{"type": "dense", "units": 4, "activation": "relu", "input_shape": [N_FEATURES]},
                        {"type": "dense", "units": N_CLASSES, "activation": "softmax"}], seed=0)
    model.compile(optimizer={"type": "adam", "learning_rate": 0.001}, loss="categorical_crossentropy",
                  metrics=["accuracy"])
    try:
        model.fit(x[:256], y[:256], epochs=1, batch_size=32, steps_per_execution=4, verbose=0)
    except TypeError:  # a --baseline-tree from before the compiled loop
        pass


def _EpochTimer():
    try:
        from trainctl.train.callbacks import Callback
    except ImportError:  # a --baseline-tree from before the package layout
        from trainctl.callbacks import Callback

    class EpochTimer(Callback):
        def __init__(self):
            super().__init__()
            self.seconds, self.cpu = [], []

        def on_epoch_begin(self, epoch, logs=None):
            self.start, self.start_cpu = time.perf_counter(), time.process_time()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self.start)
            self.cpu.append(time.process_time() - self.start_cpu)

    return EpochTimer()


def time_torch(rows, repeats, threads):
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    x_np, _, labels_np = make_data()
    results = {}
    for workload, batch_size in rows:
        n = n_samples(workload)
        x, labels = torch.from_numpy(x_np[:n]), torch.from_numpy(labels_np[:n]).long()
        widths = [N_FEATURES, *WORKLOADS[workload]]
        modules = []
        for n_in, n_out in zip(widths[:-1], widths[1:]):
            modules += [torch.nn.Linear(n_in, n_out), torch.nn.ReLU()]
        model = torch.nn.Sequential(*modules, torch.nn.Linear(widths[-1], N_CLASSES))
        optimizer = torch.optim.Adam(model.parameters(), lr=0.001, eps=1e-7, foreach=True)

        def epoch(index):
            order = torch.randperm(n)
            for start in range(0, n, batch_size):
                batch = order[start:start + batch_size]
                optimizer.zero_grad(set_to_none=True)
                loss = torch.nn.functional.cross_entropy(model(x[batch]), labels[batch])
                loss.backward()
                optimizer.step()

        results[f"{workload}/{batch_size}"] = _timed_epochs(epoch, repeats)
    return results


def _jax_model(workload, seed=0):
    import jax
    import jax.numpy as jnp

    widths = [N_FEATURES, *WORKLOADS[workload], N_CLASSES]
    keys = jax.random.split(jax.random.PRNGKey(seed), len(widths) - 1)
    params = []
    for key, n_in, n_out in zip(keys, widths[:-1], widths[1:]):
        limit = (6.0 / (n_in + n_out)) ** 0.5
        params.append((jax.random.uniform(key, (n_in, n_out), jnp.float32, -limit, limit),
                       jnp.zeros((n_out,), jnp.float32)))

    def loss_fn(params, x, y):
        h = x
        for w, b in params[:-1]:
            h = jax.nn.relu(h @ w + b)
        w, b = params[-1]
        logits = h @ w + b
        return -jnp.mean(jnp.sum(y * jax.nn.log_softmax(logits), axis=-1))

    return params, loss_fn


def _time_jax(rows, repeats, scan: bool):
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax

    x_np, y_np, _ = make_data()
    results = {}
    for workload, batch_size in rows:
        n = n_samples(workload)
        x_all, y_all = jnp.asarray(x_np[:n]), jnp.asarray(y_np[:n])
        params, loss_fn = _jax_model(workload)
        optimizer = optax.adam(1e-3, eps=1e-7)
        state = [params, optimizer.init(params)]
        n_batches = n // batch_size  # full batches only: scan needs one shape
        rng = np.random.default_rng(0)

        def step(carry, index):
            params, opt_state = carry
            grads = jax.grad(loss_fn)(params, x_all[index], y_all[index])
            updates, opt_state = optimizer.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), None

        if scan:
            @jax.jit
            def run(params, opt_state, order):
                (params, opt_state), _ = jax.lax.scan(step, (params, opt_state), order)
                return params, opt_state

            def epoch(index):
                order = jnp.asarray(rng.permutation(n)[:n_batches * batch_size].reshape(n_batches, batch_size))
                state[0], state[1] = run(state[0], state[1], order)
                jax.block_until_ready(state[0])
        else:
            jit_step = jax.jit(lambda params, opt_state, index: step((params, opt_state), index)[0])

            def epoch(index):
                order = rng.permutation(n)
                for b in range(n_batches):
                    state[0], state[1] = jit_step(state[0], state[1], jnp.asarray(order[b * batch_size:(b + 1) * batch_size]))
                jax.block_until_ready(state[0])

        result = _timed_epochs(epoch, repeats)
        result["seconds"] *= n / (n_batches * batch_size)  # per n samples, like the others
        results[f"{workload}/{batch_size}"] = result
    return results


def time_jax_step(rows, repeats, threads):
    return _time_jax(rows, repeats, scan=False)


def time_jax_scan(rows, repeats, threads):
    return _time_jax(rows, repeats, scan=True)


def _split_products_epoch():
    """One compiled epoch of the products through trainctl's gemm (kernels/blas.py: numpy's
    OpenBLAS, large narrow products split into its small ones), over typed lists of buffers."""
    from trainctl.jit import njit
    from trainctl.kernels.blas import gemm

    @njit
    def epoch(xs, ws, zs, dzs, dws, dxs, n_batches):
        for _ in range(n_batches):
            for layer in range(len(xs)):
                gemm(xs[layer], ws[layer], zs[layer], False, False)
                gemm(xs[layer], dzs[layer], dws[layer], True, False)
                if layer > 0:
                    gemm(dzs[layer], ws[layer], dxs[layer], False, True)

    return epoch


def time_bound(rows, repeats, threads):
    """Forward + backward matrix products only, on preallocated buffers: numpy's matmul, or the
    same products through trainctl's gemm where it splits them into faster small products
    (the faster epoch counts, so the bound stays one for trainctl's own products)."""
    import numpy as np
    from numba.typed import List

    split_epoch = _split_products_epoch()
    rng = np.random.default_rng(0)
    results = {}
    for workload, batch_size in rows:
        n = n_samples(workload)
        widths = [N_FEATURES, *WORKLOADS[workload], N_CLASSES]
        mats = []
        for i, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:])):
            mats.append((rng.standard_normal((batch_size, n_in), dtype=np.float32),
                         rng.standard_normal((n_in, n_out), dtype=np.float32),
                         np.empty((batch_size, n_out), np.float32),
                         rng.standard_normal((batch_size, n_out), dtype=np.float32),
                         np.empty((n_in, n_out), np.float32),
                         np.empty((batch_size, n_in), np.float32), i > 0))
        n_batches = max(1, n // batch_size)
        buffers = [List([m[k] for m in mats]) for k in range(6)]

        def numpy_epoch(index):
            for _ in range(n_batches):
                for x, w, z, dz, dw, dx, need_dx in mats:
                    np.matmul(x, w, out=z)
                    np.matmul(x.T, dz, out=dw)
                    if need_dx:
                        np.matmul(dz, w.T, out=dx)

        split_epoch(*buffers, 1)  # compile (or load) outside the timing
        result = min(_timed_epochs(numpy_epoch, repeats),
                     _timed_epochs(lambda index: split_epoch(*buffers, n_batches), repeats),
                     key=lambda timed: timed["seconds"])
        result["seconds"] *= n / (n_batches * batch_size)
        results[f"{workload}/{batch_size}"] = result
    return results


def pin_to_cores(threads: int) -> list[int]:
    """Pin this process to `threads` of its allowed cores, before any framework starts a
    thread (they inherit it). XLA's CPU client keeps its own thread pools whatever its flags
    say (JAX's "1 thread" scan used 1.4-2.5 CPU-s per wall-second here), so without this
    a 1-thread row would compare one core against two."""
    cores = sorted(os.sched_getaffinity(0))[:threads]
    os.sched_setaffinity(0, cores)
    return cores


def worker(kind: str, rows, repeats, threads):
    if kind != "unpinned":  # as a user runs `trainctl train --threads N`: the scheduler places it
        pin_to_cores(threads)
    timer = {"trainctl": time_trainctl, "before": time_trainctl, "unpinned": time_trainctl, "torch": time_torch,
             "jax_step": time_jax_step, "jax_scan": time_jax_scan, "bound": time_bound}[kind]
    print(json.dumps(timer(rows, repeats, threads)))


def run_child(kind: str, threads: int, rows, repeats) -> dict | None:
    env = dict(os.environ)
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        env[name] = str(threads)
    env["OPENBLAS_THREAD_TIMEOUT"] = "1"
    if kind == "before":
        env["PYTHONPATH"] = BASELINE_TREE
        env["TRAINCTL_CACHE_DIR"] = os.path.join(BASELINE_TREE, ".bench-cache")
    if kind.startswith("jax"):
        env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false"
                            " intra_op_parallelism_threads=1") if threads == 1 else env.get("XLA_FLAGS", "")
        env["JAX_PLATFORMS"] = "cpu"
    code = (f"import sys; sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r}); "
            f"import train_speed; train_speed.worker({kind!r}, {rows!r}, {repeats}, {threads})")
    # the "before" tree's trainctl must come first: '' (the working directory) leads sys.path
    cwd = BASELINE_TREE if kind == "before" else None
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=cwd)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["failed"])[-1]
        print(f"  {kind} ({threads} thread(s)) unavailable: {last}", file=sys.stderr)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measure(kinds, threads: int, rows, repeats: int, trials: int) -> dict[str, dict]:
    """best[kind][row]: the fastest of `trials` fresh processes, the kinds interleaved so a
    drift in the machine's speed reaches every framework alike."""
    best: dict[str, dict] = {kind: {} for kind in kinds}
    for _ in range(trials):
        for kind in kinds:
            for key, value in (run_child(kind, threads, rows, repeats) or {}).items():
                if key not in best[kind] or value["seconds"] < best[kind][key]["seconds"]:
                    cpu = min(value.get("cpu_seconds", 1e9), best[kind].get(key, {}).get("cpu_seconds", 1e9))
                    best[kind][key] = {**value, "cpu_seconds": cpu}
                else:
                    best[kind][key]["cpu_seconds"] = min(best[kind][key].get("cpu_seconds", 1e9),
                                                         value.get("cpu_seconds", 1e9))
    return best


def print_table(title: str, results: dict[int, dict[str, dict]], rows, measure: str = "seconds") -> None:
    """measure "seconds": wall time; "cpu_seconds": the process's CPU time, which a loaded
    machine's time-slicing does not inflate (meaningful for 1 thread only)."""
    nan = float("nan")
    print(f"\n{title}")
    header = (f"{'row':>10} {'thr':>3} {'trainctl/s':>10} {'torch/s':>9} {'jaxstep/s':>9} {'jaxscan/s':>9} "
              f"{'bound/s':>9} {'before/s':>9} {'÷before':>7} {'÷torch':>6} {'÷jstep':>6} {'÷jscan':>6} {'÷bound':>6} {'acc':>5} {'ep1→last s':>11}")
    print(header)
    print("-" * len(header))
    for threads, best in results.items():
        for workload, batch_size in rows:
            key = f"{workload}/{batch_size}"
            n = n_samples(workload)
            rate = {kind: (n / best[kind][key].get(measure, nan) if key in best.get(kind, {}) else nan)
                    for kind in (*KINDS, "before")}
            ours = best.get("trainctl", {}).get(key, {})
            drift = f"{ours['first']:.2f}→{ours['last']:.2f}" if workload.startswith("D") and ours else ""
            print(f"{key:>10} {threads:>3} {rate['trainctl']:>10,.0f} {rate['torch']:>9,.0f} {rate['jax_step']:>9,.0f} "
                  f"{rate['jax_scan']:>9,.0f} {rate['bound']:>9,.0f} {rate['before']:>9,.0f} "
                  f"{rate['trainctl'] / rate['before']:>7.2f} {rate['trainctl'] / rate['torch']:>6.2f} "
                  f"{rate['trainctl'] / rate['jax_step']:>6.2f} {rate['trainctl'] / rate['jax_scan']:>6.2f} "
                  f"{rate['trainctl'] / rate['bound']:>6.2f} {ours.get('accuracy', nan):>5.3f} {drift:>11}")
        paths = {f"{w}/{b}": best.get("trainctl", {}).get(f"{w}/{b}", {}).get("path") for w, b in rows}
        python_rows = [key for key, path in paths.items() if path and path != "compiled"]
        if python_rows:
            print(f"  ({threads} thr) trainctl rows run step by step from Python: {', '.join(python_rows)} "
                  f"({paths[python_rows[0]]})")
        if len(results) > 1 and 2 in results and 1 in results and threads == 2:
            worse = [f"{w}/{b}" for w, b in rows
                     if results[2]["trainctl"].get(f"{w}/{b}", {"seconds": 0})["seconds"]
                     > results[1]["trainctl"].get(f"{w}/{b}", {"seconds": 1e9})["seconds"]]
            print(f"  trainctl 2 threads slower than 1 on: {', '.join(worse) or 'no row'}")
            one, two = results[1].get("unpinned", {}), results[2].get("unpinned", {})
            if one and two:  # what a user compares: `--threads 2` against `--threads 1`, neither pinned
                ratios = [f"{key} {one[key]['seconds'] / two[key]['seconds']:.2f}"
                          for key in (f"{w}/{b}" for w, b in rows) if key in one and key in two]
                print(f"  trainctl unpinned, 2 threads ÷ 1 thread: {', '.join(ratios)}")
    sys.stdout.flush()


def busy_process() -> subprocess.Popen:
    """Another program keeping one core busy (the trial the issue reports)."""
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="4 rows, 2 repeats, 1 trial")
    parser.add_argument("--rows", nargs="+", help="rows as WORKLOAD/BATCH, e.g. W1/32 D8/128")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--trials", type=int, default=2, help="fresh processes per framework; the fastest counts")
    parser.add_argument("--kinds", nargs="+", default=list(KINDS), choices=(*KINDS, "before", "unpinned"),
                        help="unpinned: trainctl again, not pinned to its thread count's cores (as a user runs "
                        "it; the others are pinned so that a 1-thread row uses one core)")
    parser.add_argument("--no-busy", action="store_true", help="skip the table beside a busy process")
    parser.add_argument("--only-busy", action="store_true", help="only the table beside a busy process")
    parser.add_argument("--baseline-tree", help="also time the trainctl in this directory (a checkout of an "
                        "earlier commit) as 'before', interleaved with the others")
    args = parser.parse_args()
    global BASELINE_TREE
    if args.baseline_tree:
        BASELINE_TREE = os.path.abspath(args.baseline_tree)
        args.kinds = ["before", *args.kinds]
    rows = ROWS
    if args.quick:
        rows = [("W1", 32), ("W1", 512), ("W2", 512), ("D8", 128)]
        args.repeats, args.trials = 2, 1
    if args.rows:
        rows = [(r.split("/")[0], int(r.split("/")[1])) for r in args.rows]
    print(f"samples/s (best of {args.trials} fresh processes, median of {args.repeats} epochs after a warm-up); "
          f"1-minute load at start {os.getloadavg()[0]:.2f}")
    quiet = {} if args.only_busy else {
        threads: measure(args.kinds, threads, rows, args.repeats, args.trials) for threads in args.threads}
    if quiet:
        print_table(f"no background process of ours (1-minute load now {os.getloadavg()[0]:.2f})", quiet, rows)
    if 1 in quiet:
        print_table("the same runs, 1 thread, by process CPU time (what a loaded machine's time-slicing "
                    "does not inflate)", {1: quiet[1]}, rows, "cpu_seconds")
    if not args.no_busy:
        busy = busy_process()
        try:
            loaded = {threads: measure(args.kinds, threads, rows, args.repeats, args.trials) for threads in args.threads}
        finally:
            busy.kill()
            busy.wait()
        print_table(f"beside a busy process (one core spinning; load now {os.getloadavg()[0]:.2f})", loaded, rows)


if __name__ == "__main__":
    main()
