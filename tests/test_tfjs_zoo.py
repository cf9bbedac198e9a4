"""The zoo's non-convolution layers against real TensorFlow.js 4.22 in Node: the exported
model loads in TF.js, predicts what trainctl predicts, and one SGD and one Adam training step
from the same initial weights give the same loss and weights (batch norm's moving statistics
included) to 1e-5; Masking (rank 4, after an Embedding's mask) over four Adam steps. Also the
automatic names and parameter counts of TF.js's summary."""

from __future__ import annotations

import numpy as np
import pytest

from trainctl.nn.model import Sequential
from trainctl.train.loop import Trainer

pytestmark = pytest.mark.tfjs

ATOL = 1e-5
GAMMA = {"type": "random_uniform", "minval": 0.5, "maxval": 1.5}
BETA = {"type": "random_uniform", "minval": -0.5, "maxval": 0.5}
HEAD = [{"type": "flatten"}, {"type": "dense", "units": 3, "activation": "softmax"}]

MODELS = {
    # (a bias before batch norm gets a zero gradient, up to rounding, which Adam would amplify)
    "batch_norm_dense": ([{"type": "dense", "units": 6, "use_bias": False, "input_shape": [5]},
                          {"type": "batch_normalization", "momentum": 0.8, "gamma_initializer": GAMMA, "beta_initializer": BETA},
                          {"type": "dense", "units": 3, "activation": "softmax"}], (5,)),
    "batch_norm_images": ([{"type": "batch_normalization", "input_shape": [4, 4, 3], "beta_initializer": BETA,
                            "moving_variance_initializer": {"type": "constant", "value": 2.0}}, *HEAD], (4, 4, 3)),
    # Not here: batch norm over a non-last axis (axis 1, channels_first). TF.js 4.22's CPU
    # batchNorm cycles its parameters along the last axis whatever their shape, so it predicts
    # wrongly there, and its gradient fails ("Size(768) must match the product of shape
    # 1,3,1,1"); tests/test_torch_normalization.py checks that case against PyTorch.
    "layer_norm": ([{"type": "dense", "units": 6, "input_shape": [5]},
                    {"type": "layer_normalization", "gamma_initializer": GAMMA, "beta_initializer": BETA},
                    {"type": "dense", "units": 3, "activation": "softmax"}], (5,)),
    "layer_norm_two_axes": ([{"type": "layer_normalization", "axis": [-2, -1], "epsilon": 0.01, "input_shape": [3, 4],
                             "beta_initializer": BETA}, *HEAD], (3, 4)),
    "pad_crop_upsample": ([{"type": "zero_padding2d", "padding": [[1, 0], [2, 1]], "input_shape": [4, 3, 2]},
                           {"type": "cropping2d", "cropping": [[0, 1], [1, 1]]},
                           {"type": "up_sampling2d", "size": [2, 3]}, *HEAD], (4, 3, 2)),
    "channels_first_shapes": ([{"type": "zero_padding2d", "padding": 1, "data_format": "channels_first", "input_shape": [2, 3, 4]},
                               {"type": "cropping2d", "cropping": [1, 2], "data_format": "channels_first"},
                               {"type": "up_sampling2d", "size": 2, "data_format": "channels_first"}, *HEAD], (2, 3, 4)),
    "bilinear": ([{"type": "up_sampling2d", "size": [3, 2], "interpolation": "bilinear", "input_shape": [3, 4, 2]}, *HEAD], (3, 4, 2)),
    "permute_repeat": ([{"type": "dense", "units": 4, "activation": "tanh", "input_shape": [3]},
                        {"type": "repeat_vector", "n": 3}, {"type": "permute", "dims": [2, 1]}, *HEAD], (3,)),
    "activations": ([{"type": "dense", "units": 6, "input_shape": [5]}, {"type": "leaky_re_lu", "alpha": 0.2},
                     {"type": "dense", "units": 6}, {"type": "prelu", "alpha_initializer": {"type": "constant", "value": 0.25}},
                     {"type": "dense", "units": 6}, {"type": "elu"},
                     {"type": "dense", "units": 6}, {"type": "re_lu", "max_value": 0.5},
                     {"type": "dense", "units": 3}, {"type": "softmax"}], (5,)),
    "prelu_shared": ([{"type": "prelu", "shared_axes": [1, 2], "input_shape": [3, 3, 2],
                       "alpha_initializer": {"type": "random_uniform", "minval": 0.1, "maxval": 0.4}}, *HEAD], (3, 3, 2)),
}


def inputs(shape, n=16, seed=0):
    return np.random.default_rng(seed).standard_normal((n, *shape)).astype(np.float32)


def targets(n=16, classes=3, seed=1):
    return np.eye(classes, dtype=np.float32)[np.random.default_rng(seed).integers(0, classes, n)]


def train_and_compare(tfjs, layers, x, y, optimizer):
    model = Sequential(layers, seed=0)
    peer = tfjs.tfjs_train_steps(model, optimizer, "categorical_crossentropy", [(x, y)], predict_after=[x])
    model.compile(optimizer=optimizer, loss="categorical_crossentropy")
    loss = Trainer(model).train_batch(x, y, None)
    np.testing.assert_allclose(np.array(peer.losses)[0], np.array(loss), atol=ATOL, rtol=0)
    assert set(peer.weights) == set(model.get_weights())
    for name, value in model.get_weights().items():
        np.testing.assert_allclose(peer.weights[name], value, atol=ATOL, rtol=0, err_msg=name)
    np.testing.assert_allclose(peer.predictions_after[0], model.predict(x), atol=ATOL, rtol=0)
    return model


SGD, ADAM = {"type": "sgd", "learning_rate": 0.5}, {"type": "adam", "learning_rate": 0.05}
# every model with SGD; Adam (its update divides by √v, so it amplifies any gradient
# difference) on the ones with the most arithmetic — one node process per case keeps it short
CASES = [(name, SGD) for name in MODELS] + [(name, ADAM) for name in ("batch_norm_dense", "layer_norm", "bilinear", "activations")]


@pytest.mark.parametrize("name,optimizer", CASES, ids=[f"{name}-{opt['type']}" for name, opt in CASES])
def test_forward_and_one_training_step_equal_tfjs(tfjs, name, optimizer):
    layers, shape = MODELS[name]
    x = inputs(shape) * 2 + 0.3
    model = Sequential(layers, seed=0)
    np.testing.assert_allclose(tfjs.tfjs_predict(model, x), model.predict(x), atol=ATOL, rtol=0)
    train_and_compare(tfjs, layers, x, targets(), optimizer)


def test_batch_norm_moving_statistics_after_training_equal_tfjs(tfjs):
    layers, shape = MODELS["batch_norm_images"]
    x = inputs(shape) * 3 + 1
    model = train_and_compare(tfjs, layers, x, targets(), {"type": "sgd", "learning_rate": 0.1})
    moving_mean = model.get_weights()["batch_normalization_BatchNormalization1/moving_mean"]
    np.testing.assert_allclose(moving_mean, 0.01 * x.mean(axis=(0, 1, 2)), rtol=1e-5)  # moved once, from zeros


def test_embedding_lookup_and_training_step_equal_tfjs(tfjs):
    layers = [{"type": "embedding", "input_dim": 10, "output_dim": 4, "input_length": 5},
              {"type": "flatten"}, {"type": "dense", "units": 3, "activation": "softmax"}]
    x = np.random.default_rng(0).integers(0, 10, (16, 5)).astype(np.float32)
    model = Sequential(layers, seed=0)
    np.testing.assert_allclose(tfjs.tfjs_predict(model, x), model.predict(x), atol=ATOL, rtol=0)
    train_and_compare(tfjs, layers, x, targets(), ADAM)


def _grid_values(n=16):
    """[n, 4, 3, 2] values: some (step, position) pairs all 0.5 (Masking's mask_value below), a
    whole step of them, and some with one value 0.5 only (kept)."""
    x = inputs((4, 3, 2), n=n)
    x[::2, 1, 0] = 0.5
    x[1::3, 2] = 0.5
    x[::4, 3, 2, 0] = 0.5
    return x


def _padded_tokens(n=16):
    x = np.random.default_rng(3).integers(1, 6, (n, 5)).astype(np.float32)
    x[np.arange(5)[None, :] >= np.random.default_rng(4).integers(1, 6, n)[:, None]] = 0.0  # padded tails
    return x


# TF.js 4.22 Masking (core.js): computeMask = any(x != maskValue, axis -1), call = x * that mask
# with keepDims; the mask it receives is ignored (Keras 3 does the same)
MASKING = {  # id: (layers, inputs, targets)
    # rank 4: the mask is over [steps, 3] (each position's 2 values), not one value per step
    "rank4": ([{"type": "masking", "mask_value": 0.5, "input_shape": [4, 3, 2]},
               {"type": "dense", "units": 3, "activation": "tanh"}, {"type": "dense", "units": 2}],
              _grid_values, lambda x: np.tanh(x[..., :2] * 2 - 0.5)),
    # after Embedding mask_zero: the LSTM reads the Masking's mask, which keeps the padding's steps
    # (their embeddings are not all 0), not the Embedding's. The Embedding is frozen: TF.js 4.22
    # cannot train through a Masking ("gradient function not found for Any")
    "after_embedding_mask_zero": ([{"type": "embedding", "input_dim": 6, "output_dim": 3, "input_length": 5,
                                    "mask_zero": True, "trainable": False}, {"type": "masking"},
                                   {"type": "lstm", "units": 4},
                                   {"type": "dense", "units": 2}],
                                  _padded_tokens, lambda x: np.stack([np.sin(x.sum(axis=1)), x[:, 0] / 5], axis=1)),
}


@pytest.mark.parametrize("case", list(MASKING))
def test_masking_predicts_and_trains_as_tfjs(tfjs, case):
    layers, make_inputs, make_targets = MASKING[case]
    x = make_inputs()
    y = make_targets(x).astype(np.float32)
    model = Sequential(layers, seed=0)
    np.testing.assert_allclose(tfjs.tfjs_predict(model, x), model.predict(x), atol=ATOL, rtol=0)
    batches = [(x[i * 4:(i + 1) * 4], y[i * 4:(i + 1) * 4]) for i in range(4)]
    tfjs.assert_trains_as_tfjs(model, {"type": "adam", "learning_rate": 0.02}, "mean_squared_error", batches, x, ATOL)


def test_noise_layers_are_identity_at_inference_and_thresholded_relu_forward_in_both(tfjs):
    # ThresholdedReLU only forward: TF.js 4.22 cannot train it ("gradient function not found for Greater")
    model = Sequential([{"type": "dense", "units": 6, "input_shape": [5]}, {"type": "thresholded_re_lu", "theta": 0.1},
                        {"type": "gaussian_noise", "stddev": 0.5},
                        {"type": "gaussian_dropout", "rate": 0.3}, {"type": "alpha_dropout", "rate": 0.2},
                        {"type": "reshape", "target_shape": [3, 2]}, {"type": "spatial_dropout1d", "rate": 0.3},
                        *HEAD], seed=0)
    x = inputs((5,))
    np.testing.assert_allclose(tfjs.tfjs_predict(model, x), model.predict(x), atol=ATOL, rtol=0)


def test_summary_names_and_counts_equal_tfjs(tfjs):
    layers = [*MODELS["activations"][0][:4], {"type": "batch_normalization"}, {"type": "layer_normalization"},
              {"type": "repeat_vector", "n": 2}, {"type": "permute", "dims": [2, 1]}, {"type": "flatten"},
              {"type": "dense", "units": 4}, {"type": "reshape", "target_shape": [2, 2, 1]},
              {"type": "zero_padding2d"}, {"type": "cropping2d", "cropping": 1}, {"type": "up_sampling2d"},
              {"type": "flatten"}, {"type": "gaussian_noise", "stddev": 0.1}, {"type": "softmax"}]
    model = Sequential(layers, seed=0)
    peer = tfjs.tfjs_summary(model)
    assert peer.summary_rows == [(r.name, r.class_name, r.output_shape, r.n_params) for r in model.summary_rows()]
    totals = model.param_totals()
    assert peer.trainable_counts == (totals.trainable, totals.non_trainable)
    assert totals.non_trainable == 12  # moving mean and variance of 6 features


def test_a_model_built_and_trained_in_tfjs_reads_back_and_predicts_the_same(tfjs, tmp_path):
    """The reverse direction: TF.js's own configs of these layers (built with tf.layers.*,
    one training step, saved) import into trainctl and predict what TF.js predicts."""
    from trainctl.runs.formats.tfjs import read_tfjs

    js_layers = [
        {"type": "zeroPadding2d", "config": {"padding": [[1, 0], [0, 1]], "inputShape": [4, 4, 2]}},
        {"type": "batchNormalization", "config": {"momentum": 0.8}},
        {"type": "prelu", "config": {"sharedAxes": [1, 2]}},
        {"type": "upSampling2d", "config": {"size": [2, 2], "interpolation": "bilinear"}},
        {"type": "cropping2D", "config": {"cropping": [[1, 1], [2, 0]]}},
        {"type": "reshape", "config": {"targetShape": [8, 16]}},
        {"type": "layerNormalization", "config": {}},
        {"type": "permute", "config": {"dims": [2, 1]}},
        {"type": "spatialDropout1d", "config": {"rate": 0.2}},
        {"type": "flatten", "config": {}},
        {"type": "leakyReLU", "config": {"alpha": 0.1}},
        {"type": "reLU", "config": {"maxValue": 2}},
        {"type": "gaussianNoise", "config": {"stddev": 0.1}},
        {"type": "dense", "config": {"units": 3}},
        {"type": "softmax", "config": {}},
    ]
    x = inputs((4, 4, 2))
    peer = tfjs.tfjs_build_and_train(js_layers, tmp_path, compile={"optimizer": "sgd", "loss": "categoricalCrossentropy"},
                                     batches=[(x, targets())], predict=[x])
    imported = read_tfjs(tmp_path).model
    assert [layer.class_name for layer in imported.layers][:3] == ["ZeroPadding2D", "BatchNormalization", "PReLU"]
    moving_mean = imported.get_weights()["batch_normalization_BatchNormalization1/moving_mean"]
    assert np.abs(moving_mean).max() > 0  # TF.js's training step moved it; trainctl read it
    np.testing.assert_allclose(imported.predict(x), peer.predictions_after[0], atol=ATOL, rtol=0)
