"""What the experiment and search tests share: the tiny teacher config, file helpers, the
study's trials, and a real `dask scheduler` + `dask worker` cluster on 127.0.0.1."""

from __future__ import annotations

import contextlib
import csv
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.fixtures import write  # noqa: F401 (re-exported for the experiment tests)

# `python -m dask` of this interpreter: the scheduler and workers import the trainctl under
# test (a `dask` script elsewhere on PATH may belong to another environment).
DASK = [sys.executable, "-m", "dask"]


def tiny_config(n_samples: int = 240, epochs: int = 2) -> str:
    """A 6-8-3 classifier on the teacher generator: a second or less per run once compiled."""
    return f"""\
name: tiny
seed: 0
model:
  layers:
    - {{type: dense, units: 8, activation: relu, input_shape: [6]}}
    - {{type: dense, units: 3, activation: softmax}}
optimizer: {{type: adam, learning_rate: 0.01}}
loss: categorical_crossentropy
metrics: [accuracy]
data:
  train: {{generator: teacher, n_samples: {n_samples}, n_features: 6, n_classes: 3, hidden: 6}}
fit: {{epochs: {epochs}, batch_size: 32, validation_split: 0.25}}
"""


def read_results(directory: Path) -> list[dict[str, str]]:
    with open(directory / "results.csv", newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def trials_in(directory: Path) -> dict[int, str]:
    """trial number -> state, from the study's journal (Optuna's own reader)."""
    from trainctl.experiment.study import load_study_of

    study = load_study_of(directory)  # None until the client has created the study
    return {t.number: t.state.name for t in study.get_trials(deepcopy=False)} if study is not None else {}


def wait_for_address(scheduler_file: Path, process: subprocess.Popen, timeout: float = 120.0) -> str:
    """The address the scheduler wrote once it listens (it picked a free port itself: --port 0,
    so two test processes never race for one port)."""
    import json

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the dask scheduler exited with {process.returncode}")
        try:
            return json.loads(scheduler_file.read_text())["address"]
        except (OSError, ValueError, KeyError):
            time.sleep(0.2)  # not written yet (or mid-write)
    raise TimeoutError(f"the dask scheduler wrote no address to {scheduler_file} in {timeout}s")


@contextlib.contextmanager
def dask_cluster(log_dir: Path, n_workers: int = 2):
    """(address, worker processes) of a `dask scheduler` and `n_workers` single-threaded
    `dask worker` processes (each in its own session, so a test can kill one with its nanny);
    all are stopped on exit."""
    from distributed import Client

    scheduler_file = log_dir / "scheduler.json"
    logs = open(log_dir / "dask.log", "w")
    processes: list[subprocess.Popen] = []
    try:
        scheduler = subprocess.Popen([*DASK, "scheduler", "--host", "127.0.0.1", "--port", "0",
                                      "--scheduler-file", str(scheduler_file), "--no-dashboard"],
                                     stdout=logs, stderr=subprocess.STDOUT)
        processes.append(scheduler)
        address = wait_for_address(scheduler_file, scheduler)
        workers = [subprocess.Popen([*DASK, "worker", address, "--nthreads", "1", "--nworkers", "1",
                                     "--host", "127.0.0.1", "--no-dashboard"], stdout=logs,
                                    stderr=subprocess.STDOUT, start_new_session=True)
                   for _ in range(n_workers)]
        processes += workers
        with Client(address, timeout="30s") as client:
            client.wait_for_workers(n_workers, timeout=60)
        yield address, workers
    finally:
        for process in reversed(processes):
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
        for process in reversed(processes):
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        logs.close()
