"""Issue 15, item 1 for recurrent layers: the memory estimate (runs/budget.py) counts what the
layers allocate — for an RNN the states, gates and pre-activations of every step, kept for
backpropagation through time over the whole sequence × batch — so a config whose LSTM
buffers pass `--max-memory` is refused before allocation, naming the key that drives them;
and the estimate agrees with the RSS a real run reaches."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from tests.test_hostile.common import MB, cli, write

LSTM = """\
name: lstm-memory
seed: 0
model:
  layers:
    - {type: lstm, units: 8, input_shape: [1000, 1]}
    - {type: dense, units: 1}
optimizer: {type: adam, learning_rate: 0.01}
loss: mean_squared_error
data:
  train: {generator: time_series, kind: sine, window: 1000, horizon: 1, period: 20, noise: 0.05, n_samples: 400}
fit: {epochs: 1, batch_size: 400}
"""

RECURRENT = [  # layer specs whose buffers are compared with what allocate() takes
    [{"type": "lstm", "units": 7, "input_shape": [5, 3]}],
    [{"type": "lstm", "units": 7, "input_shape": [5, 3], "return_sequences": True, "dropout": 0.1}],
    [{"type": "simple_rnn", "units": 4, "input_shape": [6, 9]}],
    [{"type": "gru", "units": 5, "input_shape": [6, 2]}],
    [{"type": "gru", "units": 5, "input_shape": [6, 2], "reset_after": True, "return_sequences": True}],
    [{"type": "masking", "input_shape": [6, 2]},
     {"type": "bidirectional", "layer": {"type": "lstm", "units": 3, "return_sequences": True}}],
    [{"type": "time_distributed", "input_shape": [6, 2], "layer": {"type": "dense", "units": 3}}],
]


def allocated_nbytes(layer, skip: set[int]) -> int:
    """Bytes of the arrays a layer (and any layer it wraps) holds, each array's storage once;
    `skip` holds the ids of storage not to count (the weights and their grads)."""
    from trainctl.nn.layers.base import Layer
    from trainctl.nn.layers.recurrent import TimeMajor

    total = 0
    for value in vars(layer).values():
        for item in value if isinstance(value, (list, tuple)) else [value]:
            if isinstance(item, TimeMajor):
                item = item.flat
            if isinstance(item, Layer):
                total += allocated_nbytes(item, skip)
            elif isinstance(item, np.ndarray):
                storage = item if item.base is None else item.base
                if id(storage) not in skip:
                    skip.add(id(storage))
                    total += storage.nbytes
    return total


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("spec", RECURRENT, ids=lambda spec: spec[-1]["type"] + str(len(str(spec))))
def test_recurrent_buffer_nbytes_is_what_allocate_takes(spec, dtype):
    from trainctl.nn.model import Sequential

    model = Sequential(spec, seed=0, dtype=dtype)
    weights = {id(a if a.base is None else a.base) for w in model.weights for a in (w.value, w.grad) if a is not None}
    for batch in (1, 11):
        model.allocate(batch)
        for layer in model.layers:
            assert layer.buffer_nbytes(batch, np.dtype(dtype).itemsize) == allocated_nbytes(layer, set(weights)), layer.name


def test_lstm_buffers_past_max_memory_are_refused_at_the_key_that_drives_them(tmp_path):
    """1000 steps × 400 rows of gates: ~300 MiB of buffers for a model of 320 weights. Refused
    before allocation (small RSS, no run directory), at the sequence length (the largest
    factor), or at the batch size when that is the larger."""
    write(tmp_path, "lstm.yaml", LSTM)
    longer_batch = ["--set", "fit.batch_size=4000", "--set", "model.layers.0.input_shape=[100, 1]",
                    "--set", "data.train.window=100"]
    cases = [(["--max-memory", "200MiB"], r"lstm\.yaml:5:43: model\.layers\.0\.input_shape: "),
             (longer_batch + ["--max-memory", "200MiB"], r"--set fit\.batch_size \(overrides lstm\.yaml:11:18\): ")]

    def run(case):
        extra, where = case
        out = tmp_path / f"run{len(extra)}"
        return out, where, cli("train", "lstm.yaml", "-q", "--out", out, *extra, cwd=tmp_path)

    with ThreadPoolExecutor(2) as pool:
        for out, where, result in pool.map(run, cases):
            line = result.clean_error()
            assert re.match(rf"error: {where}training needs about \d+\.\d MiB \(.*batch buffers (2|3)\d\d\.\d MiB.*\), more "
                            r"than the 200\.0 MiB --max-memory; batch buffers is the largest part", line), line
            assert not out.exists()
            assert result.rss < 200 * MB, result.rss / MB  # refused before the buffers were allocated


def test_the_lstm_estimate_matches_the_rss_of_a_real_run(tmp_path):
    """Peak RSS of training the LSTM config minus that of the same config at one row (the
    interpreter, numba and the libraries), against the estimate's difference between the two.
    Within 0.8-1.25: the layers' buffers are counted exactly (the test above); what is left is
    the loop's per-batch arrays, allocator rounding and pages of the data's generation."""
    from trainctl.config import load_config
    from trainctl.runs.budget import training_estimate
    from trainctl.runs.build import build_model

    config = write(tmp_path, "lstm.yaml", LSTM)
    one_row = ["--set", "fit.batch_size=1", "--set", "data.train.n_samples=1"]

    def estimate(overrides):
        loaded = load_config(config, [o for o in overrides if o != "--set"])
        return training_estimate(build_model(loaded.config, loaded, shapes_only=True), loaded.config, tmp_path).total

    def run(extra, name="measured"):
        result = cli("train", config, "-q", "--out", tmp_path / f"{name}{len(extra)}", "--threads", "1", *extra, timeout=240)
        assert result.code == 0, result.stderr[-2000:]
        return result.rss

    run(one_row, "warm-up")  # compiles the kernels: both measured runs then load them (a compiling process peaks higher)
    with ThreadPoolExecutor(2) as pool:
        full, small = pool.map(run, [[], one_row])
    estimated = estimate([]) - estimate(one_row)
    assert estimated > 200 * MB, estimated / MB  # the buffers dominate: the comparison means something
    ratio = (full - small) / estimated
    assert 0.8 < ratio < 1.25, (ratio, full / MB, small / MB, estimated / MB)
