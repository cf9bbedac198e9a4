"""Layers: finite-difference gradient checks (float64) for every layer, weights and inputs,
shapes, naming, and the TF.js semantics of dropout."""

from __future__ import annotations

import numpy as np
import pytest

from trainctl.errors import TrainctlError
from tests.reference.gradients import numeric_grad
from trainctl.nn.model import Sequential


def check_model_gradients(layers, x, training=False, rtol=1e-6, atol=1e-8):
    """Loss = sum(R * model(x)); backward(R) must match central differences for x and weights."""
    model = Sequential(layers, seed=3, dtype=np.float64)
    model.allocate(x.shape[0])
    rng = np.random.default_rng(0)
    weights_r = rng.standard_normal((x.shape[0], *model.output_shape))

    def loss() -> float:
        return float(np.sum(weights_r * model.forward(x, training=training)))

    loss()
    model.backward(weights_r.copy())
    analytic = {w.name: w.grad.copy() for w in model.weights}
    for weight in model.weights:
        expected = numeric_grad(lambda _: loss(), weight.value)
        np.testing.assert_allclose(analytic[weight.name], expected, rtol=rtol, atol=atol, err_msg=weight.name)
    # dx: the first layer's input gradient, checked through a leading identity-like layer
    return model


ACTIVATIONS = ["elu", "selu", "relu", "relu6", "linear", "sigmoid", "hard_sigmoid", "softplus", "softsign",
               "tanh", "softmax", "log_softmax", "gelu", "mish", "swish"]


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_dense_gradients_for_every_activation(activation):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((5, 4)) * 0.8 + 0.05  # away from relu's kink at 0 (probability ~0)
    check_model_gradients([
        {"type": "dense", "units": 6, "activation": "tanh", "input_shape": [4]},
        {"type": "dense", "units": 3, "activation": activation},
    ], x)


def test_dense_on_nd_input_applies_to_last_axis():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 2, 5))
    model = check_model_gradients([
        {"type": "dense", "units": 4, "activation": "sigmoid", "input_shape": [2, 5]},
        {"type": "flatten"},
        {"type": "dense", "units": 2},
    ], x)
    assert model.layers[0].output_shape == (2, 4)
    assert model.output_shape == (2,)
    kernel, bias = model.layers[0].kernel.value, model.layers[0].bias.value
    expected = 1 / (1 + np.exp(-(x @ kernel + bias)))
    np.testing.assert_allclose(model.layers[0].forward(x, False), expected, rtol=1e-12)


def test_input_gradient_matches_finite_differences():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 3))
    layers = [{"type": "dense", "units": 5, "activation": "elu", "input_shape": [3]},
              {"type": "reshape", "target_shape": [5, 1]},
              {"type": "activation", "activation": "softplus"},
              {"type": "flatten"},
              {"type": "dense", "units": 2, "activation": "softmax"}]
    model = Sequential(layers, seed=0, dtype=np.float64)
    model.allocate(4)
    r = rng.standard_normal((4, 2))
    # dx of the whole stack: prepend nothing; ask layer 0 for dx by running backward manually
    model.forward(x, training=False)
    dy = r.copy()
    for layer in reversed(model.layers):
        dy = layer.backward(dy, True)
    expected = numeric_grad(lambda _: float(np.sum(r * model.forward(x, False))), x)
    np.testing.assert_allclose(dy, expected, rtol=1e-6, atol=1e-9)


def test_regularizer_gradients_and_penalty():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((4, 3))
    layers = [{"type": "dense", "units": 3, "activation": "tanh", "input_shape": [3],
               "kernel_regularizer": {"type": "l1l2", "l1": 0.01, "l2": 0.02},
               "bias_regularizer": "l2", "bias_initializer": {"type": "random_normal", "stddev": 0.3}}]
    model = Sequential(layers, seed=0, dtype=np.float64)
    model.allocate(4)
    layer = model.layers[0]
    r = rng.standard_normal((4, 3))

    def total() -> float:
        return float(np.sum(r * model.forward(x, False))) + model.regularization_loss()

    total()
    model.backward(r.copy())
    layer.add_regularization_grads()
    for weight in model.weights:
        np.testing.assert_allclose(weight.grad, numeric_grad(lambda _: total(), weight.value), rtol=1e-5, atol=1e-8)
    kernel = layer.kernel.value
    expected_penalty = 0.01 * np.abs(kernel).sum() + 0.02 * (kernel ** 2).sum() + 0.01 * (layer.bias.value ** 2).sum()
    assert model.regularization_loss() == pytest.approx(expected_penalty, rel=1e-12)


def test_activity_regularizer_gradient():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((4, 3))
    model = Sequential([{"type": "dense", "units": 2, "activation": "sigmoid", "input_shape": [3],
                         "activity_regularizer": {"type": "l2", "l2": 0.1}}], seed=0, dtype=np.float64)
    model.allocate(4)
    r = rng.standard_normal((4, 2))

    def total() -> float:
        out = model.forward(x, False)
        return float(np.sum(r * out)) + model.activity_loss(4)

    total()
    model.backward(r.copy())
    for weight in model.weights:
        np.testing.assert_allclose(weight.grad, numeric_grad(lambda _: total(), weight.value), rtol=1e-5, atol=1e-8)
    out = model.forward(x, False)
    assert model.activity_loss(4) == pytest.approx(0.1 * np.sum(out ** 2) / 4)


def test_dropout_training_only_scaled_and_gradient_uses_mask():
    x = np.ones((200, 50))
    model = Sequential([{"type": "dropout", "rate": 0.3, "input_shape": [50]}], seed=7, dtype=np.float64)
    model.allocate(200)
    assert np.array_equal(model.forward(x, training=False), x)
    y = model.forward(x, training=True).copy()
    kept = y != 0
    assert np.allclose(y[kept], 1 / 0.7)
    assert abs(kept.mean() - 0.7) < 0.02
    dx = model.layers[0].backward(np.full_like(x, 2.0))
    np.testing.assert_allclose(dx, np.where(kept, 2.0 / 0.7, 0.0))
    y2 = model.forward(x, training=True)
    assert not np.array_equal(y2 != 0, kept), "a new mask every step"


def test_dropout_is_seeded():
    def masks(seed):
        model = Sequential([{"type": "dropout", "rate": 0.5, "input_shape": [10]}], seed=seed)
        model.allocate(4)
        return model.forward(np.ones((4, 10), np.float32), training=True).copy()

    assert np.array_equal(masks(1), masks(1))
    assert not np.array_equal(masks(1), masks(2))


def test_tfjs_names_shapes_and_param_counts():
    model = Sequential([{"type": "dense", "units": 32, "activation": "relu", "input_shape": [784]},
                        {"type": "dropout", "rate": 0.1},
                        {"type": "dense", "units": 10, "activation": "softmax"}])
    rows = model.summary_rows()
    assert [(r.name, r.class_name, r.output_shape, r.n_params) for r in rows] == [
        ("dense_Dense1", "Dense", (None, 32), 25120),
        ("dropout_Dropout1", "Dropout", (None, 32), 0),
        ("dense_Dense2", "Dense", (None, 10), 330),
    ]
    assert [w.name for w in model.weights] == ["dense_Dense1/kernel", "dense_Dense1/bias",
                                               "dense_Dense2/kernel", "dense_Dense2/bias"]
    assert model.layers[0].kernel.value.shape == (784, 32)
    assert model.param_totals().total == 25450


def test_tfjs_default_initializers_for_dense():
    model = Sequential([{"type": "dense", "units": 200, "input_shape": [300]}], seed=0)
    kernel = model.layers[0].kernel.value
    # TF.js 4.22 Dense: DEFAULT_KERNEL_INITIALIZER = 'glorotNormal', a normal with stddev
    # sqrt(2 / (fan_in + fan_out)) truncated at 2 stddev (std 0.88 of that, no correction)
    sigma = np.sqrt(2 / (300 + 200))
    assert np.abs(kernel).max() <= 2 * sigma and np.abs(kernel).max() > 1.9 * sigma
    assert 0.86 * sigma < kernel.std() < 0.90 * sigma
    # a uniform draw of the same variance would never pass |w| > sqrt(3) sigma
    assert (np.abs(kernel) > np.sqrt(3) * sigma).mean() > 0.03
    assert np.all(model.layers[0].bias.value == 0)


def test_reshape_with_unknown_dimension_and_errors():
    model = Sequential([{"type": "reshape", "target_shape": [-1, 4], "input_shape": [8]}])
    assert model.output_shape == (2, 4)
    with pytest.raises(TrainctlError, match="cannot reshape"):
        Sequential([{"type": "reshape", "target_shape": [3, 3], "input_shape": [8]}])


def test_first_layer_needs_input_shape_and_names_are_unique():
    with pytest.raises(TrainctlError, match="input_shape"):
        Sequential([{"type": "dense", "units": 2}])
    with pytest.raises(TrainctlError, match="duplicate layer name"):
        Sequential([{"type": "dense", "units": 2, "input_shape": [2], "name": "a"},
                     {"type": "dense", "units": 2, "name": "a"}])


def test_same_seed_same_weights_and_model_json_round_trip():
    layers = [{"type": "dense", "units": 8, "activation": "relu", "input_shape": [4]},
              {"type": "dense", "units": 3, "activation": "softmax", "kernel_initializer": "he_normal"}]
    a, b = Sequential(layers, seed=11), Sequential(layers, seed=11)
    for wa, wb in zip(a.weights, b.weights):
        assert np.array_equal(wa.value, wb.value)
    c = Sequential(layers, seed=12)
    assert not np.array_equal(a.weights[0].value, c.weights[0].value)
    rebuilt = Sequential.from_json(a.to_json(), seed=11)
    assert rebuilt.to_json() == a.to_json()
