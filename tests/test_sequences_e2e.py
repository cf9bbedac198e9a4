"""Sequence models end to end through the CLI: the shipped forecaster beats the last-value
baseline by far (and says so), a stateful run resumes its carried state exactly, the
sequence generators make the data they promise."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from trainctl.cli import app
from trainctl.data.baselines import last_value_mae
from trainctl.data.config import AddingProblemGenerator, TimeSeriesGenerator
from trainctl.data.generators import generate

ROOT = Path(__file__).resolve().parent.parent
PLAIN_ENV = {"FORCE_COLOR": None, "TTY_COMPATIBLE": None, "NO_COLOR": None, "TTY_INTERACTIVE": None, "COLUMNS": "160"}


def invoke(*args):
    result = CliRunner().invoke(app, [str(a) for a in args], env=PLAIN_ENV)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.slow
def test_forecaster_config_is_far_below_the_last_value_baseline(tmp_path):
    out = invoke("train", ROOT / "configs" / "forecast_lstm.yaml", "--out", tmp_path / "run", "--set", "fit.epochs=5")
    match = re.search(r"last-value baseline on the validation split: mae ([0-9.e-]+) \(the model: val_mae ([0-9.e-]+)", out)
    assert match, out
    baseline, model = float(match.group(1)), float(match.group(2))
    assert model < 0.4 * baseline
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert any(key.startswith("val_") for key in metrics)


def test_summary_of_a_recurrent_config(tmp_path):
    config = tmp_path / "seq.yaml"
    config.write_text("""\
name: seq
model:
  layers:
    - {type: masking, input_shape: [10, 8]}
    - {type: bidirectional, layer: {type: lstm, units: 16, return_sequences: true}}
    - {type: gru, units: 4}
    - {type: dense, units: 1}
optimizer: adam
loss: mse
data: {train: {generator: random_normal, n_samples: 10, shape: [10, 8], target_shape: [1]}}
fit: {epochs: 1}
""")
    out = invoke("summary", config)
    assert re.search(r"bidirectional_Bidirectional1 \(Bidirectional\)[\s│]+\[null,10,32\][\s│]+3200", out), out
    assert re.search(r"gru_GRU1 \(GRU\)[\s│]+\[null,4\][\s│]+444", out), out  # 3 gates x 4 x (32 + 4 + 1)


def test_stateful_run_resumes_its_carried_state_exactly(tmp_path):
    config = tmp_path / "stateful.yaml"
    config.write_text("""\
name: stateful
seed: 1
model:
  layers:
    - {type: simple_rnn, units: 4, stateful: true, input_shape: [5, 1]}
    - {type: dense, units: 1}
optimizer: {type: sgd, learning_rate: 0.05}
loss: mse
data: {train: {generator: time_series, window: 5, n_samples: 64}}
fit: {epochs: 4, batch_size: 16, shuffle: false}
""")
    invoke("train", config, "--out", tmp_path / "whole")
    invoke("train", config, "--out", tmp_path / "part", "--set", "fit.epochs=2")
    invoke("train", "--resume", tmp_path / "part", "--set", "fit.epochs=4", "--force")  # continue to 4 epochs
    from safetensors.numpy import load_file

    whole, part = (load_file(tmp_path / name / "weights.safetensors") for name in ("whole", "part"))
    for key in whole:
        np.testing.assert_array_equal(whole[key], part[key], err_msg=key)


def test_time_series_windows_follow_the_series():
    x, y, _ = generate(TimeSeriesGenerator(generator="time_series", n_samples=50, window=6, horizon=2), seed=0)
    assert x.shape == (50, 6, 1) and y.shape == (50, 2)
    np.testing.assert_array_equal(x[1, :5, 0], x[0, 1:, 0])  # overlapping windows of one series
    np.testing.assert_array_equal(y[0], [x[1, -1, 0], x[2, -1, 0]])  # the next values
    assert last_value_mae(x, y) > 0.05
    arma_x, _, _ = generate(TimeSeriesGenerator(generator="time_series", kind="arma", n_samples=20), seed=0)
    assert np.isfinite(arma_x).all() and arma_x.std() > 0


def test_adding_problem_targets_are_the_marked_sums():
    x, y, _ = generate(AddingProblemGenerator(generator="adding_problem", n_samples=40, length=12), seed=3)
    assert x.shape == (40, 12, 2) and y.shape == (40, 1)
    np.testing.assert_array_equal(x[:, :, 1].sum(axis=1), np.full(40, 2.0))
    np.testing.assert_allclose(y[:, 0], (x[:, :, 0] * x[:, :, 1]).sum(axis=1), rtol=1e-6)
