"""float64 models on the compiled loop's general plans against step-by-step Python execution:
the conv/normalization loop and the sequence loop (with an activation pair other than TF.js's
defaults, called at its address), bit-identical weights, optimizer state and histories.
The dense loop's float64 case is in test_compiled.py. Each loop is compiled once more for
float64 (the plans are typed by dtype), ~50-110 s of CPU on an empty kernel cache: one model
each, covering as many rows as it can."""

from __future__ import annotations

import numpy as np

from tests.test_compiled import _assert_identical
from trainctl.nn.model import Sequential

N, CLASSES = 29, 3  # 29: the last batch of 8 is partial


def _labels(x):
    score = x.reshape(N, -1).sum(axis=1)
    return np.eye(CLASSES)[np.digitize(score, np.quantile(score, [0.33, 0.66]))]


def _fit_both_ways(layers, x, optimizer):
    runs = []
    for jit in (True, False):
        model = Sequential([*layers, {"type": "dense", "units": CLASSES, "activation": "softmax"}],
                           seed=7, dtype=np.float64)
        model.compile(optimizer=optimizer, loss="categorical_crossentropy", metrics=["accuracy"])
        history = model.fit(x, _labels(x), epochs=2, batch_size=8, verbose=0, jit_compile=jit,
                            steps_per_execution=3, validation_split=0.2)
        runs.append((model, history))
    assert runs[0][0].compiled_fallback is None  # it really ran compiled
    assert all(weight.dtype == np.float64 for weight in runs[0][0].get_weights().values())
    _assert_identical(*runs)
    return runs


def test_a_float64_conv_model_runs_compiled_bit_for_bit():
    x = np.random.default_rng(0).standard_normal((N, 6, 6, 2))
    _fit_both_ways([
        {"type": "conv2d", "filters": 3, "kernel_size": 3, "padding": "same", "input_shape": [6, 6, 2],
         "kernel_regularizer": "l2"},
        {"type": "batch_normalization", "momentum": 0.9},
        {"type": "activation", "activation": "relu"},
        {"type": "max_pooling2d"},
        {"type": "depthwise_conv2d", "kernel_size": 2},
        {"type": "global_average_pooling2d"},
        {"type": "dropout", "rate": 0.25}], x, {"type": "rmsprop", "centered": True, "momentum": 0.3})


def test_a_float64_recurrent_model_with_another_activation_pair_runs_compiled_bit_for_bit():
    x = np.random.default_rng(1).standard_normal((N, 5, 2))
    x[::3, 1] = 0.0  # whole steps at the Masking layer's mask value
    x[1::4, 3:] = 0.0
    runs = _fit_both_ways([
        {"type": "masking", "input_shape": [5, 2]},
        {"type": "lstm", "units": 4, "return_sequences": True, "activation": "softsign",
         "recurrent_activation": "sigmoid", "dropout": 0.2, "recurrent_dropout": 0.1},
        {"type": "gru", "units": 3, "reset_after": True, "go_backwards": True}], x, "adam")
    lstm = runs[0][0].layers[1]
    assert (lstm.activation.name, lstm.recurrent_activation.name, lstm.dtype) == ("softsign", "sigmoid", np.float64)
