"""One small model per layer type, for the interop tests (every registered layer type must
appear here: tests/test_interop.py checks it). Each ends in softmax so the same model
trains with categorical cross-entropy in every runtime."""

from __future__ import annotations

import numpy as np

# layer type → (model layers, whether TF.js/Keras training can be compared step for step)
LAYER_MODELS: dict[str, tuple[list[dict], bool]] = {
    "dense": ([{"type": "dense", "units": 8, "activation": "relu", "input_shape": [6]},
               {"type": "dense", "units": 3, "activation": "softmax"}], True),
    "activation": ([{"type": "dense", "units": 8, "input_shape": [6]},
                    {"type": "activation", "activation": "tanh"},
                    {"type": "dense", "units": 3, "activation": "softmax"}], True),
    # Dropout draws its own random masks in each runtime: inference only is compared.
    "dropout": ([{"type": "dense", "units": 8, "activation": "relu", "input_shape": [6]},
                 {"type": "dropout", "rate": 0.3},
                 {"type": "dense", "units": 3, "activation": "softmax"}], False),
    "flatten": ([{"type": "reshape", "target_shape": [2, 3], "input_shape": [6]},
                 {"type": "dense", "units": 4, "activation": "elu"},
                 {"type": "flatten"},
                 {"type": "dense", "units": 3, "activation": "softmax"}], True),
    "reshape": ([{"type": "dense", "units": 8, "activation": "sigmoid", "input_shape": [6]},
                 {"type": "reshape", "target_shape": [2, -1]},
                 {"type": "flatten"},
                 {"type": "dense", "units": 3, "activation": "softmax"}], True),
}


def sample_data(input_shape, n=16, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, *input_shape)).astype(np.float32)
    y = np.eye(classes, dtype=np.float32)[rng.integers(0, classes, n)]
    return x, y
