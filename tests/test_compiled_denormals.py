"""Flush-to-zero / denormals-are-zero reach the compiled loop (issue 13: deep models slowed as
training went on through denormal arithmetic): inputs that are all denormal floats are zeros
to a flushing thread, so the first Dense layer's pre-activations are exactly 0, relu passes no
gradient and its bias never moves; with IEEE denormals kept they are tiny positive numbers,
relu passes the gradient and the bias trains. The compiled loop and the Python path agree bit
for bit either way."""

from __future__ import annotations

import numpy as np
import pytest

from trainctl.nn.model import Sequential


def _fit(flush: bool, jit_compile: bool):
    rng = np.random.default_rng(0)
    x = (rng.random((96, 6)) * 1e-39).astype(np.float32)  # every value a float32 denormal
    y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 96)]
    model = Sequential([{"type": "dense", "units": 8, "activation": "relu", "input_shape": [6],
                         "kernel_initializer": {"type": "random_uniform", "minval": 0.5, "maxval": 1.0}},
                        {"type": "dense", "units": 3, "activation": "softmax"}], seed=2)
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    model.fit(x, y, epochs=2, batch_size=16, verbose=0, flush_denormals=flush, jit_compile=jit_compile,
              steps_per_execution=4)
    return model


@pytest.mark.parametrize("flush", [True, False])
def test_the_compiled_loop_flushes_denormals_as_the_python_path(flush):
    compiled, python = _fit(flush, True), _fit(flush, False)
    assert compiled.compiled_fallback is None
    for a, b in zip(compiled.weights, python.weights):
        assert a.value.tobytes() == b.value.tobytes(), a.name
    first_bias = compiled.layers[0].bias.value
    assert np.all(first_bias == 0) if flush else np.any(first_bias != 0)
