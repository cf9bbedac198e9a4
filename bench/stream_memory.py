"""Peak memory and throughput of training from a stream vs from in-memory arrays.

    python bench/stream_memory.py                    # 10^5 and 10^6 rows, npy + csv + memory
    python bench/stream_memory.py --sizes 1e5 1e6 1e7 --modes npy memory

For each size it writes x.npy / y.npy (and data.csv) of N rows × 32 features into a temp
directory (in chunks, so the writer stays small), then trains one epoch of a small MLP in a
fresh subprocess per (size, mode) and reports that process's peak RSS (VmHWM) and
samples/s. Modes: `npy` streams the .npy files through the shuffle buffer, `csv` streams
the CSV, `memory` loads the arrays into RAM and trains through ArraySource, `csv-read` only
reads the CSV (rows/s of the reader alone: training caps the `csv` mode near `memory`),
`pyarrow` is pyarrow.csv.read_csv of the whole file into memory with its columns as numpy:
the parser's own speed, the ceiling for a reader built on it (held in memory, not streamed).
Targets (issue 4): peak RSS at 10^7 rows within 1.2x of 10^5, npy stream within 30% of
in-memory throughput.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

N_FEATURES = 32
BATCH_SIZE = 256
MODEL = [
    {"type": "dense", "units": 64, "activation": "relu", "input_shape": [N_FEATURES]},
    {"type": "dense", "units": 1, "activation": "sigmoid"},
]


def write_files(directory: Path, n: int, csv: bool) -> None:
    rng = np.random.default_rng(0)
    w = rng.normal(size=N_FEATURES)
    x_file = np.lib.format.open_memmap(directory / "x.npy", mode="w+", dtype=np.float32, shape=(n, N_FEATURES))
    y_file = np.lib.format.open_memmap(directory / "y.npy", mode="w+", dtype=np.float32, shape=(n,))
    handle = open(directory / "data.csv", "w") if csv else None
    if handle:
        handle.write(",".join([f"f{i}" for i in range(N_FEATURES)] + ["label"]) + "\n")
    step = 200_000
    for start in range(0, n, step):
        stop = min(n, start + step)
        x = rng.normal(size=(stop - start, N_FEATURES)).astype(np.float32)
        y = (x @ w > 0).astype(np.float32)
        x_file[start:stop], y_file[start:stop] = x, y
        if handle:
            np.savetxt(handle, np.c_[x, y], fmt="%.5g", delimiter=",")
    x_file.flush(), y_file.flush()
    del x_file, y_file
    if handle:
        handle.close()


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def child(mode: str, directory: Path) -> dict:
    from trainctl.data import DataConfig, load_data
    from trainctl.data.source import ArraySource

    if mode == "pyarrow":  # the parser's ceiling: pyarrow.csv.read_csv of the whole file, columns to numpy
        import pyarrow.csv as pacsv

        start, cpu = time.perf_counter(), time.process_time()
        table = pacsv.read_csv(directory / "data.csv")
        n = table.num_rows
        columns = [column.to_numpy() for column in table.columns]
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        return {"mode": mode, "rows": n, "seconds": seconds, "samples_per_s": n / seconds, "cpu_seconds": cpu,
                "peak_rss_mb": peak_rss_mb(), "loss": float("nan"), "columns": len(columns)}
    if mode == "csv-read":  # the CSV reader alone: every chunk parsed, nothing trained
        from trainctl.data import table_for

        cfg = DataConfig.model_validate({"train": {"csv": "data.csv", "target": "label", "labels": "none"}})
        start, cpu = time.perf_counter(), time.process_time()
        n = sum(len(chunk) for chunk in table_for(cfg.train, directory).chunks())
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        return {"mode": mode, "rows": n, "seconds": seconds, "samples_per_s": n / seconds, "cpu_seconds": cpu,
                "peak_rss_mb": peak_rss_mb(), "loss": float("nan")}
    from trainctl.nn.model import Sequential
    from trainctl.train.loop import fit

    model = Sequential(MODEL, seed=0)
    model.compile("adam", "binary_crossentropy", ["accuracy"])
    # Compile the kernels on a few rows first, so the timing below is the steady state.
    warm_x = np.zeros((BATCH_SIZE, N_FEATURES), np.float32)
    fit(model, warm_x, np.zeros((BATCH_SIZE, 1), np.float32), epochs=1, batch_size=BATCH_SIZE)
    if mode == "memory":
        x = np.load(directory / "x.npy")  # read whole into RAM
        y = np.load(directory / "y.npy")[:, None]
        source = ArraySource(x, y, shuffle=True, seed=0)
    else:
        train = {"npy": "x.npy", "targets": "y.npy", "labels": "none"} if mode == "npy" else \
            {"csv": "data.csv", "target": "label", "labels": "none"}
        cfg = DataConfig.model_validate({"train": {"stream": {"source": train, "shuffle": {"buffer_size": 10000}}}})
        source = load_data(cfg, 0, directory).stream
    fit(model, epochs=1, batch_size=BATCH_SIZE, source=source, steps_per_epoch=2)  # the source's kernels too
    start, cpu = time.perf_counter(), time.process_time()
    history = fit(model, epochs=2, initial_epoch=1, batch_size=BATCH_SIZE, source=source)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    n = int(np.load(directory / "y.npy", mmap_mode="r").shape[0])
    return {"mode": mode, "rows": n, "seconds": seconds, "samples_per_s": n / seconds, "cpu_seconds": cpu,
            "peak_rss_mb": peak_rss_mb(), "loss": history.history["loss"][-1]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", type=float, default=[1e5, 1e6])
    parser.add_argument("--modes", nargs="+", default=["memory", "npy", "csv"], choices=["memory", "npy", "csv", "csv-read", "pyarrow"])
    parser.add_argument("--child", nargs=2, metavar=("MODE", "DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], Path(args.child[1]))))
        return
    # samples/s is wall-clock; per CPU s divides by the process's CPU time, steadier on a shared machine
    print(f"{'rows':>10} {'mode':>8} {'peak RSS MB':>12} {'samples/s':>11} {'per CPU s':>11} {'seconds':>8} {'loss':>7}")
    results = []
    for size in args.sizes:
        n = int(size)
        with tempfile.TemporaryDirectory(prefix="trainctl-bench-") as tmp:
            write_files(Path(tmp), n, any(m.startswith("csv") or m == "pyarrow" for m in args.modes))
            for mode in args.modes:
                # one BLAS thread, as trainctl's CLI defaults to: a second one only spins at this size
                env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
                out = subprocess.run([sys.executable, __file__, "--child", mode, tmp], capture_output=True,
                                     text=True, env=env)
                if out.returncode != 0:
                    print(f"{n:>10} {mode:>8} failed: {out.stderr.strip().splitlines()[-1]}")
                    continue
                r = json.loads(out.stdout.strip().splitlines()[-1])
                results.append(r)
                per_cpu = r["rows"] / r["cpu_seconds"] if r.get("cpu_seconds") else float("nan")
                print(f"{n:>10} {mode:>8} {r['peak_rss_mb']:>12.0f} {r['samples_per_s']:>11.0f} {per_cpu:>11.0f} "
                      f"{r['seconds']:>8.1f} {r['loss']:>7.4f}", flush=True)
    for mode in args.modes:
        rows = [r for r in results if r["mode"] == mode]
        if len(rows) > 1:
            print(f"{mode}: peak RSS at {rows[-1]['rows']:.0e} rows / at {rows[0]['rows']:.0e} rows = "
                  f"{rows[-1]['peak_rss_mb'] / rows[0]['peak_rss_mb']:.2f}x")
    for size in {r["rows"] for r in results}:
        by = {r["mode"]: r for r in results if r["rows"] == size}
        if "csv-read" in by and "pyarrow" in by:
            print(f"{size:.0e} rows: CSV reader = {by['csv-read']['rows'] / by['csv-read']['cpu_seconds'] / (by['pyarrow']['rows'] / by['pyarrow']['cpu_seconds']):.2f}x pyarrow read_csv per CPU s")
        if "npy" in by and "memory" in by:
            print(f"{size:.0e} rows: npy stream throughput = {by['npy']['samples_per_s'] / by['memory']['samples_per_s']:.2f}x in-memory")


if __name__ == "__main__":
    main()
