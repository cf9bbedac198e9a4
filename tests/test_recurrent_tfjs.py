"""Recurrent layers against real TensorFlow.js 4.22 in Node: the exported model predicts what
trainctl predicts, and ten Adam steps from the same weights give the same losses and weights
to 1e-5 — for each layer type and option set, masking included (dropout draws differ between
the two RNGs, so training is compared without it)."""

from __future__ import annotations

import numpy as np
import pytest

from trainctl.nn.model import Sequential

pytestmark = pytest.mark.tfjs

ATOL = 1e-5
STEPS, FEATURES = 6, 3

CASES = {
    "simple_rnn": [{"type": "simple_rnn", "units": 5}],
    "simple_rnn-relu-sequences": [{"type": "simple_rnn", "units": 4, "activation": "relu", "return_sequences": True},
                                  {"type": "flatten"}],
    "lstm": [{"type": "lstm", "units": 5}],
    "lstm-backwards-sequences-forget-bias": [
        {"type": "lstm", "units": 4, "go_backwards": True, "return_sequences": True, "unit_forget_bias": True},
        {"type": "lstm", "units": 3}],
    "gru": [{"type": "gru", "units": 5}],
    "gru-backwards-sigmoid": [{"type": "gru", "units": 4, "go_backwards": True, "recurrent_activation": "sigmoid"}],
    "masking-lstm": [{"type": "masking", "mask_value": 0.0}, {"type": "lstm", "units": 4, "return_sequences": True},
                     {"type": "gru", "units": 3}],
    "bidirectional-concat": [{"type": "bidirectional", "layer": {"type": "lstm", "units": 3}}],
    "bidirectional-sum-sequences": [{"type": "bidirectional", "merge_mode": "sum",
                                     "layer": {"type": "gru", "units": 3, "return_sequences": True}},
                                    {"type": "flatten"}],
    "time_distributed": [{"type": "simple_rnn", "units": 4, "return_sequences": True},
                         {"type": "time_distributed", "layer": {"type": "dense", "units": 2, "activation": "tanh"}},
                         {"type": "flatten"}],
}


def _model(layers, seed=0):
    first = {**layers[0], "input_shape": [STEPS, FEATURES]}
    return Sequential([first, *layers[1:], {"type": "dense", "units": 2}], seed=seed)


def _data(n=40, masked=False):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((n, STEPS, FEATURES)).astype(np.float32)
    if masked:  # padded tails of random length, and a hole
        for row in range(n):
            x[row, rng.integers(2, STEPS + 1):] = 0.0
        x[::3, 1] = 0.0
    y = np.stack([np.tanh(x.sum(axis=(1, 2)) / 4), np.sin(x[:, :, 0].sum(axis=1))], axis=1).astype(np.float32)
    return x, y


@pytest.mark.parametrize("case", list(CASES))
def test_forward_and_ten_adam_steps_equal_tfjs(tfjs, case):
    model = _model(CASES[case])
    x, y = _data(masked=case.startswith("masking"))
    # one node process each: the step-0 loss checks the forward pass from the exported
    # weights, the predictions after ten steps check it on every sample
    batches = [(x[i * 4:(i + 1) * 4], y[i * 4:(i + 1) * 4]) for i in range(10)]
    tfjs.assert_trains_as_tfjs(model, {"type": "adam", "learning_rate": 0.01}, "mean_squared_error", batches, x, ATOL)


def test_summary_rows_equal_tfjs(tfjs):
    model = _model([{"type": "bidirectional", "layer": {"type": "lstm", "units": 3, "return_sequences": True}},
                    {"type": "time_distributed", "layer": {"type": "dense", "units": 2}},
                    {"type": "gru", "units": 4}])
    peer = tfjs.tfjs_summary(model)
    assert peer.summary_rows == [(r.name, r.class_name, r.output_shape, r.n_params) for r in model.summary_rows()]


def test_reset_after_gru_is_refused_for_tfjs(tmp_path):  # no node needed
    from trainctl.errors import ExportRefused
    from trainctl.runs.formats import tfjs as tfjs_format

    model = _model([{"type": "gru", "units": 2, "reset_after": True}])
    with pytest.raises(ExportRefused, match="gru_GRU1 \\(GRU\\): reset_after"):
        tfjs_format.write_tfjs(model, tmp_path / "out")
