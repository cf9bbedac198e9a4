"""NaN propagates through every activation and loss, plain and fused, as in TF.js.

Issue 9: the ReLU fast paths mapped NaN to 0 and the clipped losses (binary crossentropy, KL
divergence, MSLE) mapped a NaN prediction to a clip bound, so a diverging run trained on a
finite loss and terminate_on_nan could never fire. TF.js's relu and clipByValue pass NaN on.
"""

import math

import numpy as np
import pytest

from trainctl.kernels import codes
from trainctl.nn.activations import ACTIVATIONS
from trainctl.nn.losses import LOSSES

ACTIVATIONS_ = sorted(codes.ACTIVATION_CODES)
LOSSES_ = sorted(codes.LOSS_CODES)


def _with_nan(dtype, shape=(3, 4)):
    z = np.linspace(-2.0, 2.0, shape[0] * shape[1]).reshape(shape).astype(dtype)
    z[1, 2] = np.nan
    return z


@pytest.mark.parametrize("name", ACTIVATIONS_)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_activation_forward_and_backward_propagate_nan(name, dtype):
    act = ACTIVATIONS.get(name)
    bias = np.zeros(4, dtype)
    rowwise = code_is_rowwise(act)
    for fused in (False, True):
        z = _with_nan(dtype)
        y = np.empty_like(z)
        if fused:
            act.forward_with_bias(z, bias, y)  # the Dense path: bias + activation in one kernel
        else:
            act.forward(z, y)
        nan_out = np.isnan(y)
        assert nan_out[1, 2], (name, fused)
        assert nan_out[1].all() if rowwise else nan_out.sum() == 1, (name, fused)
        dy = np.ones_like(z)
        dy[1, 2] = np.nan  # as the NaN loss sends back
        dz = np.empty_like(z)
        if fused:
            act.backward_with_bias_grad(z, y, dy, dz, np.empty(4, dtype))
        else:
            act.backward(z, y, dy, dz)
        # hard_sigmoid's clipByValue gradient is where(inside, dy, 0): TF.js gives 0, trainctl
        # dy * 0 = NaN; either way nothing finite is invented from a NaN
        assert np.isnan(dz[1, 2]) or (name == "hard_sigmoid" and dz[1, 2] == 0), (name, fused)
        finite_rows = [0, 2]
        assert np.isfinite(dz[finite_rows]).all(), (name, fused)


def code_is_rowwise(act) -> bool:
    return act.code in codes.ROWWISE_ACTIVATIONS


def _targets(loss, dtype, shape=(3, 4)):
    rows, cols = shape
    if loss.target_kind == "sparse_labels":
        return np.array([[0.0], [2.0], [3.0]], dtype)
    if loss.target_kind == "signed":
        return np.where(np.arange(rows * cols).reshape(shape) % 2 == 0, 1.0, -1.0).astype(dtype)
    one_hot = np.zeros(shape, dtype)
    one_hot[np.arange(rows), [0, 2, 3]] = 1.0
    return one_hot


@pytest.mark.parametrize("name", LOSSES_)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_loss_of_a_nan_prediction_is_nan(name, dtype):
    loss = LOSSES.get(name)
    probs = np.full((3, 4), 0.25, dtype)
    probs[1, 2] = np.nan
    grad = np.empty_like(probs)
    per_row = loss.compute(_targets(loss, dtype), probs, grad=grad)
    assert math.isnan(per_row[1]), name
    assert np.isfinite(per_row[[0, 2]]).all(), name
    assert np.isfinite(grad[[0, 2]]).all(), name


@pytest.mark.parametrize("name", ["categorical_crossentropy", "sparse_categorical_crossentropy",
                                  "binary_crossentropy"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fused_loss_of_a_nan_output_is_nan_and_so_is_its_gradient(name, dtype):
    loss = LOSSES.get(name)
    logits = _with_nan(dtype)
    probs = np.empty_like(logits)
    ACTIVATIONS.get(loss.fused_activation).forward(logits, probs)
    dz = np.empty_like(probs)
    per_row = loss.fused_backward(_targets(loss, dtype), probs, None, None, dz)
    assert math.isnan(per_row[1]) and np.isnan(dz[1, 2]), name
    assert np.isfinite(per_row[[0, 2]]).all() and np.isfinite(dz[[0, 2]]).all(), name


def test_terminate_on_nan_fires_when_relu_outputs_go_nan():
    # A NaN weight reaches the loss through ReLU and binary crossentropy; the run stops.
    from trainctl import Sequential
    from trainctl.train.callbacks import TerminateOnNaN

    model = Sequential([{"type": "dense", "units": 4, "activation": "relu", "input_shape": [3]},
                        {"type": "dense", "units": 1, "activation": "sigmoid"}], seed=1)
    model.compile(optimizer="sgd", loss="binary_crossentropy")
    kernel = next(w for w in model.weights if w.name.endswith("kernel"))
    kernel.value[0, :] = np.nan
    stop = TerminateOnNaN()
    x = np.ones((8, 3), np.float32)
    y = np.ones((8, 1), np.float32)
    model.fit(x, y, epochs=2, batch_size=4, callbacks=[stop])
    assert stop.stopped_at == (0, 0) and stop.failure
