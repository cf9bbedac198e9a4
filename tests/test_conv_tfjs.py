"""Convolution and pooling against real TensorFlow.js 4.22 in Node (tests/peers): for each
layer type and option set, from the same initial weights, the loss of one training step
(the forward), every weight after it (the backward) and the predictions after it equal
TF.js's to 1e-5; the TF.js MNIST CNN gives TF.js's summary rows and, over 20 Adam steps,
TF.js's losses and weights.

Forward only (FORWARD_ONLY), where TF.js 4.22 cannot be the reference for the gradient:
- dilation_rate > 1: TF.js throws "dilation rates greater than 1 are not yet supported in
  gradients" (conv2d, conv1d, depthwise/separable);
- average pooling with 'same' padding: TF.js's forward divides each border window by its
  real pixels, but its AvgPoolGrad multiplies by 1 / (pool_h * pool_w) everywhere, which is
  not the gradient of that forward. trainctl keeps the true gradient (finite differences
  and PyTorch agree, tests/test_conv_layers.py, tests/test_conv_torch.py); 'valid' average
  pooling trains exactly as TF.js.
"""

from __future__ import annotations

import numpy as np
import pytest

from trainctl.nn.model import Sequential
from trainctl.train.loop import Trainer

pytestmark = pytest.mark.tfjs
ATOL = 1e-5

HEAD = [{"type": "flatten"}, {"type": "dense", "units": 3, "activation": "softmax"}]
CONV = {"type": "conv2d", "filters": 3, "kernel_size": 2, "activation": "relu"}  # gives pooling a gradient to pass on
CONV1D = {"type": "conv1d", "filters": 3, "kernel_size": 2, "activation": "relu"}

CASES = {
    "conv2d valid": ([7, 6, 2], [{"type": "conv2d", "filters": 4, "kernel_size": 3}]),
    "conv2d same strides [2,1] relu": ([7, 6, 2], [{"type": "conv2d", "filters": 4, "kernel_size": [3, 2],
                                                    "strides": [2, 1], "padding": "same", "activation": "relu"}]),
    "conv2d dilation 2 same tanh": ([7, 6, 2], [{"type": "conv2d", "filters": 3, "kernel_size": 3, "dilation_rate": 2,
                                                 "padding": "same", "activation": "tanh"}]),
    "conv2d channels_first stride 2 no bias l2": (
        [2, 7, 6], [{"type": "conv2d", "filters": 3, "kernel_size": 3, "strides": 2, "data_format": "channels_first",
                     "use_bias": False, "kernel_regularizer": {"type": "l2", "l2": 0.01}, "activation": "elu"}]),
    "conv1d same stride 2": ([9, 2], [{"type": "conv1d", "filters": 3, "kernel_size": 3, "strides": 2,
                                       "padding": "same", "activation": "relu"}]),
    "conv1d dilation 2": ([9, 2], [{"type": "conv1d", "filters": 3, "kernel_size": 3, "dilation_rate": 2,
                                    "activation": "sigmoid"}]),
    "conv2d_transpose valid stride 2": ([3, 4, 2], [{"type": "conv2d_transpose", "filters": 2, "kernel_size": 3,
                                                     "strides": 2, "activation": "relu"}]),
    "conv2d_transpose same strides [2,1] channels_first": (
        [2, 3, 4], [{"type": "conv2d_transpose", "filters": 2, "kernel_size": [3, 2], "strides": [2, 1],
                     "padding": "same", "data_format": "channels_first"}]),
    "depthwise_conv2d same x2 stride 2": ([7, 6, 2], [{"type": "depthwise_conv2d", "kernel_size": 3, "strides": 2,
                                                       "padding": "same", "depth_multiplier": 2, "activation": "relu"}]),
    "depthwise_conv2d channels_first": ([2, 6, 5], [{"type": "depthwise_conv2d", "kernel_size": [2, 3],
                                                     "data_format": "channels_first"}]),
    "separable_conv2d same dilation 2 x2": ([7, 6, 2], [{"type": "separable_conv2d", "filters": 3, "kernel_size": 3,
                                                         "dilation_rate": 2, "padding": "same", "depth_multiplier": 2,
                                                         "activation": "relu"}]),
    "separable_conv2d valid stride 2": ([7, 6, 2], [{"type": "separable_conv2d", "filters": 3, "kernel_size": 2,
                                                     "strides": 2}]),
    "max_pooling2d same 3/2": ([7, 6, 2], [CONV, {"type": "max_pooling2d", "pool_size": 3, "strides": 2,
                                                  "padding": "same"}]),
    "max_pooling2d default": ([7, 6, 2], [CONV, {"type": "max_pooling2d"}]),
    "average_pooling2d valid [3,2] channels_first": (
        [2, 7, 6], [{**CONV, "data_format": "channels_first"},
                    {"type": "average_pooling2d", "pool_size": [3, 2], "strides": 1,
                     "data_format": "channels_first"}]),
    "average_pooling2d same [3,2] channels_first": (
        [2, 7, 6], [{**CONV, "data_format": "channels_first"},
                    {"type": "average_pooling2d", "pool_size": [3, 2], "padding": "same",
                     "data_format": "channels_first"}]),
    "max_pooling1d same 3 stride 2": ([9, 2], [CONV1D, {"type": "max_pooling1d", "pool_size": 3, "strides": 2,
                                                        "padding": "same"}]),
    "average_pooling1d": ([9, 2], [CONV1D, {"type": "average_pooling1d", "pool_size": 3}]),
    "global_average_pooling1d": ([9, 2], [CONV1D, {"type": "global_average_pooling1d"}]),
    "global_max_pooling1d": ([9, 2], [CONV1D, {"type": "global_max_pooling1d"}]),
    "global_average_pooling2d channels_first": ([2, 5, 4], [{**CONV, "data_format": "channels_first"},
                                                            {"type": "global_average_pooling2d",
                                                             "data_format": "channels_first"}]),
    "global_max_pooling2d": ([5, 4, 2], [CONV, {"type": "global_max_pooling2d"}]),
}


FORWARD_ONLY = {"conv2d dilation 2 same tanh", "conv1d dilation 2", "separable_conv2d same dilation 2 x2",
                "average_pooling2d same [3,2] channels_first"}


def compare_training(tfjs, model, optimizer, batches, predict):
    peer = tfjs.tfjs_train_steps(model, optimizer, "categorical_crossentropy", batches, predict_after=[predict])
    model.compile(optimizer=optimizer, loss="categorical_crossentropy")
    trainer = Trainer(model)
    ours = [trainer.train_batch(xb, yb, None) for xb, yb in batches]
    np.testing.assert_allclose(np.array(peer.losses).reshape(len(ours), -1)[:, 0], np.array(ours).reshape(-1),
                               atol=ATOL, rtol=0)
    for name, value in model.get_weights().items():
        np.testing.assert_allclose(peer.weights[name], value, atol=ATOL, rtol=0, err_msg=name)
    np.testing.assert_allclose(peer.predictions_after[0], model.predict(predict), atol=ATOL, rtol=0)


@pytest.mark.parametrize("case", list(CASES))
def test_layer_forward_and_training_step_equal_tfjs(tfjs, case):
    input_shape, layers = CASES[case]
    head = HEAD[1:] if layers[-1]["type"].startswith("global") else HEAD  # TF.js Flatten needs rank >= 3
    layers = [{**layers[0], "input_shape": input_shape}, *layers[1:], *head]
    model = Sequential(layers, seed=1)
    rng = np.random.default_rng(2)
    for w in model.weights:  # biases off zero: their path is part of the comparison
        if w.name.endswith("/bias"):
            w.value[...] = rng.uniform(-0.2, 0.2, w.value.shape)
    x = rng.standard_normal((6, *input_shape)).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 6)]
    if case in FORWARD_ONLY:
        np.testing.assert_allclose(tfjs.tfjs_predict(model, x), model.predict(x), atol=ATOL, rtol=0)
        return
    compare_training(tfjs, model, {"type": "sgd", "learning_rate": 0.1}, [(x, y)], x)


MNIST_CNN = [
    {"type": "conv2d", "filters": 8, "kernel_size": 5, "strides": 1, "activation": "relu",
     "kernel_initializer": "variance_scaling", "input_shape": [28, 28, 1]},
    {"type": "max_pooling2d", "pool_size": [2, 2], "strides": [2, 2]},
    {"type": "conv2d", "filters": 16, "kernel_size": 5, "strides": 1, "activation": "relu",
     "kernel_initializer": "variance_scaling"},
    {"type": "max_pooling2d", "pool_size": [2, 2], "strides": [2, 2]},
    {"type": "flatten"},
    {"type": "dense", "units": 10, "activation": "softmax", "kernel_initializer": "variance_scaling"},
]


def mnist_batches(n_batches, batch_size=8):  # TF.js trains ~26 samples/s (pure-JS CPU backend)
    from tests.test_datasets_e2e import DATA

    with np.load(DATA / "mnist_10k.npz") as data:
        x = (data["x"][: n_batches * batch_size] / 255.0).astype(np.float32).reshape(-1, 28, 28, 1)
        y = np.eye(10, dtype=np.float32)[data["y"][: n_batches * batch_size]]
    return [(x[k:k + batch_size], y[k:k + batch_size]) for k in range(0, len(x), batch_size)]


def test_mnist_cnn_summary_equals_tfjs(tfjs):
    model = Sequential(MNIST_CNN)
    peer = tfjs.tfjs_summary(model)
    assert peer.summary_rows == [(r.name, r.class_name, r.output_shape, r.n_params) for r in model.summary_rows()]
    assert peer.trainable_counts == (5994, 0)


@pytest.mark.slow
def test_mnist_cnn_20_adam_steps_equal_tfjs(tfjs, monkeypatch):
    monkeypatch.setattr(tfjs, "TIMEOUT_S", 900)  # 160 images through TF.js's pure-JS conv gradients
    model = Sequential(MNIST_CNN, seed=0)
    batches = mnist_batches(20)
    compare_training(tfjs, model, {"type": "adam", "learning_rate": 0.001}, batches, batches[0][0])
