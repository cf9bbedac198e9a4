"""The measured BLAS thread count (train/thread_governor.py): it keeps the faster count,
follows a change of load, and switching never changes a bit of training."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from threadpoolctl import threadpool_info

from trainctl.nn.model import Sequential
from trainctl.train import thread_governor
from trainctl.train.callbacks import Callback
from trainctl.train.thread_governor import PROBE_EVERY, ThreadGovernor

from tests.fixtures import teacher_config, write


class _Machine:
    """A fake clock and BLAS: each step of `samples` takes samples / rate[count] seconds."""

    def __init__(self, rates: dict[int, float]):
        self.rates = dict(rates)
        self.now = 0.0
        self.counts: list[int] = []
        self.count = 2  # the pools at the most when a fit starts; the governor sets its own
        self.governor = ThreadGovernor(2, self._set, clock=lambda: self.now)

    def _set(self, count: int) -> None:
        self.count = count

    def steps(self, n: int, samples: int = 32, first_extra: float = 0.0) -> None:
        for i in range(n):
            self.governor.start()
            self.now += samples / self.rates[self.count] + (first_extra if i == 0 else 0.0)
            self.governor.stop(samples)
            self.counts.append(self.count)


def _slices(machine: _Machine, n: int) -> int:
    """Steps that make n slices of SLICE_SECONDS at the slowest rate."""
    return int(n * thread_governor.SLICE_SECONDS * max(machine.rates.values()) / 32) + 1


@pytest.mark.parametrize("faster", [1, 2])
def test_it_settles_on_the_faster_count(faster):
    machine = _Machine({faster: 300_000.0, 3 - faster: 100_000.0})
    machine.steps(_slices(machine, 4 * PROBE_EVERY))
    settled = machine.counts[len(machine.counts) // 4:]
    assert np.mean(np.array(settled) == faster) > 0.9  # the other count only in its short tries


def test_a_fit_shorter_than_the_probe_trains_at_one_thread():
    # two slices' worth of steps: the probe of 2 threads has not begun, so a short fit is
    # never slower than --threads 1 (starting at 2 left it at 2 when 2 collapsed)
    machine = _Machine({1: 100_000.0, 2: 40_000.0})
    machine.steps(_slices(machine, 2))
    assert set(machine.counts) == {1}


def test_a_slow_first_slice_does_not_decide():
    # the first steps compile: a 10 s first step at 2 threads must not count against 2
    machine = _Machine({1: 100_000.0, 2: 200_000.0})
    machine.steps(_slices(machine, 2 * PROBE_EVERY), first_extra=10.0)
    assert machine.counts[-1] == 2


@pytest.mark.parametrize("slower", [0.3, 0.8])
def test_a_try_far_slower_than_the_other_count_ends_early(slower):
    # beside a busy core 2 threads run 0.3-0.8x one: each try of 2 ends after LOSING_AFTER of
    # steps, not a whole slice (nor the rest of its queue), and costs that little
    rate = 100_000.0 * slower
    machine = _Machine({1: 100_000.0, 2: rate})
    machine.steps(_slices(machine, 3 * PROBE_EVERY))
    at_two = machine.counts.count(2) * 32 / rate  # seconds the fit spent at 2 threads
    tries = 1 + len(machine.counts) * 32 / 100_000.0 / (PROBE_EVERY * thread_governor.SLICE_SECONDS)
    assert 0 < at_two <= tries * (thread_governor.LOSING_AFTER + 2 * 32 / rate)
    assert machine.counts[-1] == 1


def test_a_try_a_little_slower_runs_its_whole_slice():
    # 0.95x is not "far slower" (a noisy slice can be): the try is measured over its slices
    machine = _Machine({1: 100_000.0, 2: 95_000.0})
    machine.steps(_slices(machine, 6))
    at_two = machine.counts[machine.counts.index(2):]
    steps = at_two.index(1) if 1 in at_two else len(at_two)  # the first try's steps at 2 threads
    assert steps * 32 / 95_000.0 >= 2 * thread_governor.SLICE_SECONDS * 0.99  # PROBE_SLICES whole slices


def test_it_follows_a_change_of_load():
    machine = _Machine({1: 100_000.0, 2: 200_000.0})
    machine.steps(_slices(machine, 2 * PROBE_EVERY))
    assert machine.counts[-1] == 2
    machine.rates = {1: 100_000.0, 2: 40_000.0}  # a neighbour takes a core: 2 threads collapse
    machine.counts.clear()
    machine.steps(_slices(machine, 3 * PROBE_EVERY))
    assert machine.counts[-1] == 1
    machine.governor.finish()
    assert machine.count == 2  # the pools are left at the most, as found


class _SeenThreads(Callback):
    def __init__(self):
        self.counts: set[int] = set()

    def on_batch_end(self, batch, logs=None):
        self.counts |= {info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"}


def _fit(threads, steps_per_execution, dtype=np.float32):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1024, 784)).astype(dtype)  # 784 inputs: a depth OpenBLAS's threads split otherwise
    y = np.eye(10, dtype=dtype)[rng.integers(0, 10, 1024)]
    model = Sequential([{"type": "dense", "units": 256, "activation": "relu", "input_shape": [784]},
                        {"type": "dense", "units": 10, "activation": "softmax"}], seed=1, dtype=dtype)
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    seen = _SeenThreads()
    history = model.fit(x, y, epochs=2, batch_size=128, threads=threads, callbacks=[seen],
                        steps_per_execution=steps_per_execution or "auto", jit_compile=bool(steps_per_execution))
    return model, history.history, seen.counts


@pytest.mark.parametrize("steps_per_execution", [None, 2], ids=["python_steps", "compiled_loop"])
def test_switching_threads_changes_no_bit(monkeypatch, steps_per_execution):
    one, history_one, _ = _fit(1, steps_per_execution)
    monkeypatch.setattr(thread_governor, "SLICE_SECONDS", 0.0)  # every step (chunk) a slice
    monkeypatch.setattr(thread_governor, "PROBE_EVERY", 1)  # and a try of the other count after each
    switched, history_switched, seen = _fit(2, steps_per_execution)
    assert (switched.compiled_fallback is None) == (steps_per_execution == 2)
    assert seen == {1, 2}  # the fit really trained at both counts
    assert history_switched == history_one
    weights_one, weights_switched = one.get_weights(), switched.get_weights()
    assert list(weights_one) == list(weights_switched)
    for name in weights_one:
        assert weights_one[name].tobytes() == weights_switched[name].tobytes(), name


def test_a_float64_fit_keeps_one_thread_and_its_bits(monkeypatch):
    """OpenBLAS's threaded dgemm rounds W2's products differently from one thread, so a float64
    fit asked for 2 threads trains at 1: the same bytes as --threads 1, and the pools as they
    were after it."""
    one, history_one, _ = _fit(1, 2, np.float64)
    monkeypatch.setattr(thread_governor, "SLICE_SECONDS", 0.0)
    monkeypatch.setattr(thread_governor, "PROBE_EVERY", 1)
    before = [info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"]
    two, history_two, seen = _fit(2, 2, np.float64)
    assert seen == {1}
    assert [info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"] == before
    assert history_two == history_one
    for name, value in one.get_weights().items():
        assert value.tobytes() == two.get_weights()[name].tobytes(), name


def test_cli_threads_2_trains_the_same_bytes(tmp_path):
    config = write(tmp_path, "c.yaml", teacher_config(units=64, n_samples=512, fit="{epochs: 2, batch_size: 64}"))
    runs = {}
    for threads in (1, 2):
        out = tmp_path / f"t{threads}"
        done = subprocess.run(check=False, args=[sys.executable, "-m", "trainctl", "train", str(config), "--out", str(out),
                               "--threads", str(threads), "-q"], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        runs[threads] = (out / "weights.safetensors").read_bytes()
    assert runs[1] == runs[2]
