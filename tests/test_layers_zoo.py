"""The non-convolution layers of the zoo: finite-difference gradients (float64) for every
layer, its input and every trainable weight over the option grid; batch-norm moving
statistics against TF.js's formula; shapes, TF.js names and option validation."""

from __future__ import annotations

import numpy as np
import pytest

from tests.reference.gradients import numeric_grad
from trainctl.errors import TrainctlError
from trainctl.nn.model import Sequential


def check_layer(spec, x, *, training=False, rtol=1e-6, atol=1e-8, input_grad=True):
    """One layer as a model; loss = Σ R·layer(x). Its backward must match central differences
    for the input and every trainable weight. Random layers redraw the same numbers each
    forward (their state is restored), so the loss is a deterministic function."""
    model = Sequential([{**spec, "input_shape": list(x.shape[1:])}], seed=3, dtype=np.float64)
    layer = model.layers[0]
    model.allocate(x.shape[0])
    r = np.random.default_rng(7).standard_normal((x.shape[0], *model.output_shape))
    state = layer.get_state()

    def loss(_=None) -> float:
        if state:
            layer.set_state(state)
        return float(np.sum(r * layer.forward(x, training)))

    loss()
    dx = layer.backward(r.copy(), True)
    dx = None if dx is None else dx.copy()
    analytic = {w.name: w.grad.copy() for w in model.trainable_weights}
    for weight in model.trainable_weights:
        expected = numeric_grad(loss, weight.value)
        np.testing.assert_allclose(analytic[weight.name], expected, rtol=rtol, atol=atol, err_msg=weight.name)
    if input_grad:
        np.testing.assert_allclose(dx, numeric_grad(loss, x), rtol=rtol, atol=atol, err_msg="input")
    # need_dx=False gives the same weight gradients
    loss()
    assert layer.backward(r.copy(), False) is None
    for weight in model.trainable_weights:
        np.testing.assert_allclose(weight.grad, analytic[weight.name], rtol=1e-12, atol=1e-14)
    return model


def data(*shape, seed=0, scale=1.0, offset=0.0):
    return np.random.default_rng(seed).standard_normal(shape) * scale + offset


GAMMA = {"type": "random_uniform", "minval": 0.5, "maxval": 1.5}
BETA = {"type": "random_uniform", "minval": -0.5, "maxval": 0.5}


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("shape,options", [
    ((6, 3), {}),
    ((3, 2, 4), {}),  # [n, steps, channels], axis -1
    ((3, 3, 2, 2), {"axis": 1}),  # channels_first images
    ((3, 2, 3, 2), {"axis": 2}),  # a middle axis
    ((5, 4), {"center": False}),
    ((5, 4), {"scale": False}),
    ((5, 4), {"center": False, "scale": False, "epsilon": 0.1}),
])
def test_batch_normalization_gradients(shape, options, training):
    spec = {"type": "batch_normalization", "gamma_initializer": GAMMA, "beta_initializer": BETA,
            "moving_mean_initializer": {"type": "constant", "value": 0.3},
            "moving_variance_initializer": {"type": "constant", "value": 1.7}, **options}
    check_layer(spec, data(*shape, scale=2.0, offset=1.0), training=training)


@pytest.mark.parametrize("shape,options", [
    ((4, 5), {}),
    ((3, 2, 4), {}),
    ((3, 2, 4), {"axis": [-2, -1]}),
    ((3, 3, 4), {"axis": 1}),  # normalise over steps, per channel
    ((3, 2, 3, 2), {"axis": [1, 2]}),
    ((4, 5), {"center": False}),
    ((4, 5), {"scale": False, "epsilon": 0.01}),
])
def test_layer_normalization_gradients(shape, options):
    spec = {"type": "layer_normalization", "gamma_initializer": GAMMA, "beta_initializer": BETA, **options}
    model = check_layer(spec, data(*shape, offset=0.5))
    x = data(*shape, offset=0.5)
    layer = model.layers[0]
    if options == {}:  # the formula itself
        mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
        expected = (x - mean) / np.sqrt(var + 1e-3) * layer.gamma.value + layer.beta.value
        np.testing.assert_allclose(layer.forward(x, False), expected, rtol=1e-12)


@pytest.mark.parametrize("spec,shape", [
    ({"type": "zero_padding1d"}, (2, 3, 2)),
    ({"type": "zero_padding1d", "padding": [2, 0]}, (2, 3, 2)),
    ({"type": "zero_padding2d"}, (2, 3, 2, 2)),
    ({"type": "zero_padding2d", "padding": [1, 2]}, (2, 3, 2, 2)),
    ({"type": "zero_padding2d", "padding": [[0, 1], [2, 0]], "data_format": "channelsFirst"}, (2, 2, 3, 3)),
    ({"type": "cropping1d"}, (2, 5, 2)),
    ({"type": "cropping1d", "cropping": [0, 2]}, (2, 5, 2)),
    ({"type": "cropping2d", "cropping": 1}, (2, 4, 5, 2)),
    ({"type": "cropping2d", "cropping": [[1, 0], [0, 2]]}, (2, 4, 5, 2)),
    ({"type": "cropping2d", "cropping": [[0, 1], [1, 1]], "data_format": "channels_first"}, (2, 2, 4, 5)),
    ({"type": "up_sampling1d", "size": 3}, (2, 3, 2)),
    ({"type": "up_sampling2d"}, (2, 2, 3, 2)),
    ({"type": "up_sampling2d", "size": [2, 3]}, (2, 3, 2, 1)),
    ({"type": "up_sampling2d", "interpolation": "bilinear"}, (2, 3, 3, 2)),
    ({"type": "up_sampling2d", "size": [3, 2], "interpolation": "bilinear"}, (2, 3, 5, 2)),
    ({"type": "up_sampling2d", "size": [2, 3], "interpolation": "bilinear", "data_format": "channels_first"}, (2, 2, 3, 4)),
    ({"type": "permute", "dims": [2, 1]}, (2, 3, 4)),
    ({"type": "permute", "dims": [3, 1, 2]}, (2, 2, 3, 4)),
    ({"type": "repeat_vector", "n": 3}, (2, 4)),
])
def test_shape_layer_gradients(spec, shape):
    check_layer(spec, data(*shape))


def built(spec, x):
    model = Sequential([{**spec, "input_shape": list(x.shape[1:])}], dtype=np.float64)
    model.allocate(x.shape[0])
    return model


def test_shape_layer_values():
    x = np.arange(2 * 3 * 2, dtype=np.float64).reshape(2, 3, 2)
    np.testing.assert_array_equal(built({"type": "zero_padding1d", "padding": [1, 2]}, x).forward(x),
                                  np.pad(x, [(0, 0), (1, 2), (0, 0)]))
    images = np.arange(2 * 4 * 5 * 3, dtype=np.float64).reshape(2, 4, 5, 3)
    np.testing.assert_array_equal(built({"type": "cropping2d", "cropping": [[1, 0], [2, 1]]}, images).forward(images),
                                  images[:, 1:, 2:4, :])
    np.testing.assert_array_equal(built({"type": "up_sampling2d", "size": [2, 3]}, images).forward(images),
                                  images.repeat(2, axis=1).repeat(3, axis=2))
    np.testing.assert_array_equal(built({"type": "permute", "dims": [3, 1, 2]}, images).forward(images),
                                  images.transpose(0, 3, 1, 2))
    vectors = images.reshape(2, -1)
    np.testing.assert_array_equal(built({"type": "repeat_vector", "n": 2}, vectors).forward(vectors),
                                  np.stack([vectors, vectors], axis=1))


def tfjs_resize_bilinear(x, new_h, new_w):
    """TF.js's CPU resizeBilinear (alignCorners false, halfPixelCenters false), written out."""
    n, h, w, c = x.shape
    out = np.zeros((n, new_h, new_w, c))
    for r in range(new_h):
        fr = (h / new_h) * r
        r0, r1 = max(0, int(np.floor(fr))), min(h - 1, int(np.ceil(fr)))
        for q in range(new_w):
            fq = (w / new_w) * q
            q0, q1 = max(0, int(np.floor(fq))), min(w - 1, int(np.ceil(fq)))
            top = x[:, r0, q0] + (x[:, r0, q1] - x[:, r0, q0]) * (fq - q0)
            bottom = x[:, r1, q0] + (x[:, r1, q1] - x[:, r1, q0]) * (fq - q0)
            out[:, r, q] = top + (bottom - top) * (fr - r0)
    return out


def test_bilinear_up_sampling_is_tfjs_resize_bilinear():
    x = data(2, 3, 5, 2)
    model = Sequential([{"type": "up_sampling2d", "size": [3, 2], "interpolation": "bilinear", "input_shape": [3, 5, 2]}],
                       dtype=np.float64)
    model.allocate(2)
    np.testing.assert_allclose(model.forward(x), tfjs_resize_bilinear(x, 9, 10), rtol=1e-12)


@pytest.mark.parametrize("spec,shape", [
    ({"type": "spatial_dropout1d", "rate": 0.4}, (4, 3, 5)),
    ({"type": "spatial_dropout2d", "rate": 0.4}, (3, 2, 3, 4)),
    ({"type": "spatial_dropout2d", "rate": 0.4, "data_format": "channels_first"}, (3, 4, 2, 3)),
    ({"type": "gaussian_noise", "stddev": 0.5}, (4, 5)),
    ({"type": "gaussian_dropout", "rate": 0.3}, (4, 5)),
    ({"type": "alpha_dropout", "rate": 0.3}, (4, 5)),
])
def test_noise_layer_gradients_in_training(spec, shape):
    x = data(*shape)
    model = check_layer(spec, x, training=True)
    layer = model.layers[0]
    np.testing.assert_array_equal(layer.forward(x, training=False), x)  # identity at inference
    first = layer.forward(x, training=True).copy()
    second = layer.forward(x, training=True)
    assert not np.array_equal(first, second)  # fresh draws every step


def test_noise_layer_formulas():
    x = data(400, 6, 8, seed=1)
    sd = Sequential([{"type": "spatial_dropout1d", "rate": 0.25, "input_shape": [6, 8]}], dtype=np.float64)
    sd.allocate(400)
    y = sd.forward(x, training=True)
    ratio = y / x
    # one decision per (sample, channel), shared by every step; kept values scaled by 1/(1-rate)
    assert np.allclose(ratio, ratio[:, :1, :])
    assert set(np.unique(np.round(ratio, 12))) <= {0.0, round(1 / 0.75, 12)}
    assert abs((ratio[:, 0, :] == 0).mean() - 0.25) < 0.03

    ad = Sequential([{"type": "alpha_dropout", "rate": 0.2, "input_shape": [6, 8]}], dtype=np.float64)
    ad.allocate(400)
    y = ad.forward(x, training=True)
    alpha_p = -1.6732632423543772848170429916717 * 1.0507009873554804934193349852946
    a = ((1 - 0.2) * (1 + 0.2 * alpha_p ** 2)) ** -0.5
    b = -a * alpha_p * 0.2
    kept = np.isclose(y, a * x + b)
    dropped = np.isclose(y, a * -alpha_p + b)  # TF.js: (kept - 1)·alpha_p
    assert np.all(kept | dropped)
    assert abs(dropped.mean() - 0.2) < 0.02

    gd = Sequential([{"type": "gaussian_dropout", "rate": 0.2, "input_shape": [6, 8]}], dtype=np.float64)
    gd.allocate(400)
    factor = gd.forward(np.ones_like(x), training=True)
    assert abs(factor.mean() - 1) < 0.01 and abs(factor.std() - np.sqrt(0.2 / 0.8)) < 0.01


def test_noise_layer_state_resumes_the_same_draws():
    spec = {"type": "gaussian_noise", "stddev": 1.0, "input_shape": [5]}
    model = Sequential([spec], seed=4, dtype=np.float64)
    model.allocate(3)
    layer = model.layers[0]
    x = np.zeros((3, 5))
    layer.forward(x, True)
    saved = layer.get_state()
    expected = layer.forward(x, True).copy()
    again = Sequential([spec], seed=4, dtype=np.float64)
    again.allocate(3)
    again.layers[0].set_state(saved)
    np.testing.assert_array_equal(again.layers[0].forward(x, True), expected)


RELU_OPTIONS = [{}, {"max_value": 0.8}, {"threshold": 0.3}, {"negative_slope": 0.2},
                {"max_value": 1.2, "threshold": -0.4, "negative_slope": 0.1}, {"threshold": 0.5, "negative_slope": 0.3}]


@pytest.mark.parametrize("options", RELU_OPTIONS)
def test_relu_layer_gradients_and_keras_formula(options):
    x = data(6, 7)
    model = check_layer({"type": "re_lu", **options}, x)
    threshold, slope, cap = options.get("threshold", 0.0), options.get("negative_slope", 0.0), options.get("max_value")
    positive = np.where(x > threshold, x, 0.0)
    if cap is not None:
        positive = np.clip(positive, 0.0, cap)
    expected = positive - slope * np.maximum(threshold - x, 0.0)
    np.testing.assert_allclose(model.forward(x), expected, rtol=1e-12)


@pytest.mark.parametrize("spec,shape,formula", [
    ({"type": "leaky_re_lu"}, (4, 5), lambda x: np.where(x < 0, 0.3 * x, x)),
    ({"type": "leaky_re_lu", "alpha": 0.05}, (3, 2, 4), lambda x: np.where(x < 0, 0.05 * x, x)),
    ({"type": "elu"}, (4, 5), lambda x: np.where(x > 0, x, np.expm1(x))),
    ({"type": "elu", "alpha": 0.7}, (4, 5), lambda x: np.where(x > 0, x, 0.7 * np.expm1(x))),
    ({"type": "thresholded_re_lu"}, (4, 5), lambda x: np.where(x > 1.0, x, 0.0)),
    ({"type": "thresholded_re_lu", "theta": 0.2}, (4, 5), lambda x: np.where(x > 0.2, x, 0.0)),
    ({"type": "softmax"}, (4, 5), lambda x: np.exp(x) / np.exp(x).sum(1, keepdims=True)),
    ({"type": "softmax", "axis": -1}, (3, 2, 4), lambda x: np.exp(x) / np.exp(x).sum(-1, keepdims=True)),
    ({"type": "softmax", "axis": 1}, (3, 2, 4), lambda x: np.exp(x) / np.exp(x).sum(1, keepdims=True)),
    ({"type": "softmax", "axis": [1, 2]}, (3, 2, 4), lambda x: np.exp(x) / np.exp(x).sum((1, 2), keepdims=True)),
])
def test_activation_layer_gradients_and_formulas(spec, shape, formula):
    x = data(*shape)
    model = check_layer(spec, x)
    np.testing.assert_allclose(model.forward(x), formula(x), rtol=1e-12)


ALPHA = {"type": "random_uniform", "minval": 0.1, "maxval": 0.5}


@pytest.mark.parametrize("shape,shared,alpha_shape", [
    ((4, 5), None, (5,)),
    ((3, 2, 3, 4), None, (2, 3, 4)),
    ((3, 2, 3, 4), [1, 2], (1, 1, 4)),
    ((3, 2, 3, 4), 3, (2, 3, 1)),
])
def test_prelu_gradients_and_shared_axes(shape, shared, alpha_shape):
    x = data(*shape)
    model = check_layer({"type": "prelu", "alpha_initializer": ALPHA, "shared_axes": shared}, x)
    alpha = model.layers[0].alpha
    assert alpha.name == "p_re_lu_PReLU1/alpha" and alpha.value.shape == alpha_shape
    np.testing.assert_allclose(model.forward(x), np.where(x < 0, alpha.value * x, x), rtol=1e-12)


def test_prelu_defaults_to_zero_alpha_as_tfjs():
    model = Sequential([{"type": "prelu", "input_shape": [3]}])
    np.testing.assert_array_equal(model.layers[0].alpha.value, 0.0)


@pytest.mark.parametrize("shape,options", [((6, 5), {}), ((4, 2, 3), {"output_dim": 2}), ((5, 4), {"input_length": 4})])
def test_embedding_gradients_and_lookup(shape, options):
    x = np.random.default_rng(1).integers(0, 7, shape).astype(np.float64)
    spec = {"type": "embedding", "input_dim": 7, "output_dim": 3, **options}
    model = check_layer(spec, x, input_grad=False)
    table = model.layers[0].embeddings
    assert table.name == "embedding_Embedding1/embeddings" and table.value.shape == (7, options.get("output_dim", 3))
    assert np.all(np.abs(table.value) <= 0.05)  # TF.js default randomUniform(-0.05, 0.05)
    np.testing.assert_array_equal(model.forward(x), table.value[x.astype(int)])


def test_embedding_input_length_gives_the_input_shape_and_mask_zero_is_carried():
    model = Sequential([{"type": "embedding", "input_dim": 10, "output_dim": 4, "input_length": 6, "mask_zero": True},
                        {"type": "flatten"}])
    assert model.input_shape == (6,) and model.layers[0].output_shape == (6, 4)
    model.allocate(2)
    x = np.array([[0, 1, 2, 0, 3, 4], [5, 0, 0, 6, 7, 8]], np.float32)
    np.testing.assert_array_equal(model.layers[0].compute_mask(x, None), x != 0)
    assert model.layers[0].get_config()["mask_zero"] is True


@pytest.mark.parametrize("bad", [7.0, -1.0, 2.5, np.nan])
def test_embedding_index_out_of_range_names_the_row(bad):
    model = Sequential([{"type": "embedding", "input_dim": 7, "output_dim": 2, "input_shape": [3]}])
    x = np.zeros((5, 3), np.float32)
    x[3, 1] = bad
    with pytest.raises(TrainctlError, match=r"^training data: row 4: embedding_Embedding1 index .* \(position 1\) is not an integer in \[0, 7\)$"):
        model.layers[0].check_input(x, "training data")
    model.allocate(5)
    with pytest.raises(TrainctlError, match=r"^batch: row 4: embedding_Embedding1 index"):
        model.forward(x)


def test_batch_norm_moving_statistics_follow_the_tfjs_formula():
    """TF.js doMovingAverage: moving ← moving − (moving − batch)·(1 − momentum), with the
    batch mean and the biased batch variance (tf.moments); only in training."""
    momentum = 0.9
    model = Sequential([{"type": "batch_normalization", "momentum": momentum, "input_shape": [3, 2]}], dtype=np.float64)
    layer = model.layers[0]
    model.allocate(8)
    mean, var = np.zeros(2), np.ones(2)
    for step in range(4):
        x = data(8, 3, 2, seed=step, scale=3.0, offset=step)
        y = model.forward(x, training=True)
        batch_mean, batch_var = x.mean(axis=(0, 1)), x.var(axis=(0, 1))
        np.testing.assert_allclose(y, (x - batch_mean) / np.sqrt(batch_var + 1e-3), rtol=1e-10, atol=1e-12)
        mean = mean - (mean - batch_mean) * (1 - momentum)
        var = var - (var - batch_var) * (1 - momentum)
        np.testing.assert_allclose(layer.moving_mean.value, mean, rtol=1e-12)
        np.testing.assert_allclose(layer.moving_variance.value, var, rtol=1e-12)
    x = data(8, 3, 2, seed=9)
    y = model.forward(x, training=False)  # inference: the moving statistics, unchanged
    np.testing.assert_allclose(y, (x - mean) / np.sqrt(var + 1e-3), rtol=1e-12)
    np.testing.assert_allclose(layer.moving_mean.value, mean, rtol=1e-12)


def test_batch_norm_weights_are_tfjs_named_and_moving_statistics_non_trainable():
    model = Sequential([{"type": "dense", "units": 4, "input_shape": [3]}, {"type": "batch_normalization"},
                        {"type": "batch_normalization", "scale": False}])
    names = [(w.name, w.trainable) for w in model.weights]
    assert names[2:] == [
        ("batch_normalization_BatchNormalization1/gamma", True),
        ("batch_normalization_BatchNormalization1/beta", True),
        ("batch_normalization_BatchNormalization1/moving_mean", False),
        ("batch_normalization_BatchNormalization1/moving_variance", False),
        ("batch_normalization_BatchNormalization2/beta", True),
        ("batch_normalization_BatchNormalization2/moving_mean", False),
        ("batch_normalization_BatchNormalization2/moving_variance", False),
    ]
    totals = model.param_totals()
    assert (totals.total, totals.trainable, totals.non_trainable) == (16 + 16 + 12, 16 + 8 + 4, 8 + 8)
    assert model.flat_values.size == totals.trainable  # the optimizer never sees the moving statistics


def test_fit_updates_moving_statistics_and_predict_does_not():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 4)).astype(np.float32) * 2 + 3
    y = (x[:, :1] > 3).astype(np.float32)
    model = Sequential([{"type": "batch_normalization", "input_shape": [4]}, {"type": "dense", "units": 1, "activation": "sigmoid"}])
    model.compile("adam", "binary_crossentropy")
    layer = model.layers[0]
    model.fit(x, y, epochs=2, batch_size=16, shuffle=False)
    moved = layer.moving_mean.value.copy()
    assert np.all(moved > 0.1)  # 8 updates of 1% each toward a mean of 3
    model.predict(x)
    model.evaluate(x, y)
    np.testing.assert_array_equal(layer.moving_mean.value, moved)


@pytest.mark.parametrize("spec,message", [
    ({"type": "batch_normalization", "axis": 3, "input_shape": [4, 2]}, "axis 3 is not a feature axis"),
    ({"type": "batch_normalization", "axis": 0, "input_shape": [4]}, "axis 0 is not a feature axis"),
    ({"type": "layer_normalization", "axis": [1, 3], "input_shape": [2, 3, 4]}, "must name adjacent axes"),
    ({"type": "cropping2d", "cropping": 2, "input_shape": [4, 4, 1]}, "leaves nothing"),
    ({"type": "zero_padding2d", "input_shape": [4, 4]}, "expects inputs [null,rows,cols,channels]"),
    ({"type": "up_sampling1d", "input_shape": [4]}, "expects inputs [null,steps,channels]"),
    ({"type": "permute", "dims": [1, 2], "input_shape": [4]}, "has 2 axes"),
    ({"type": "prelu", "shared_axes": [3], "input_shape": [4, 2]}, "shared_axes [3] must be in 1..2"),
    ({"type": "softmax", "axis": 3, "input_shape": [4, 2]}, "must name adjacent feature axes"),
    ({"type": "embedding", "input_dim": 5, "output_dim": 2, "input_length": 3, "input_shape": [4]}, "input_length is 3"),
    ({"type": "spatial_dropout1d", "rate": 0.1, "input_shape": [4]}, "expects inputs of rank 3"),
])
def test_bad_layer_options_are_one_line_errors(spec, message):
    with pytest.raises(TrainctlError) as error:
        Sequential([spec])
    assert message in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize("spec", [
    {"type": "permute", "dims": [1, 3]},
    {"type": "up_sampling2d", "interpolation": "bicubic"},
    {"type": "zero_padding2d", "data_format": "channels_middle"},
    {"type": "gaussian_dropout", "rate": 1.5},
])
def test_bad_option_values_are_config_errors(spec):
    with pytest.raises(TrainctlError):
        Sequential([{**spec, "input_shape": [4, 4, 2]}])


def test_tfjs_camel_case_ids_and_options_resolve():
    model = Sequential([
        {"type": "zeroPadding2d", "padding": 1, "dataFormat": "channelsLast", "inputShape": [3, 3, 1]},
        {"type": "cropping2D", "cropping": 1},
        {"type": "upSampling2d", "size": [2, 2]},
        {"type": "batchNormalization", "movingMeanInitializer": "zeros"},
        {"type": "leakyReLU"}, {"type": "reLU", "maxValue": 6}, {"type": "thresholdedReLU"},
        {"type": "flatten"}, {"type": "repeatVector", "n": 2}, {"type": "layerNormalization"},
        {"type": "spatialDropout1d", "rate": 0.1}, {"type": "gaussianNoise", "stddev": 0.1},
    ])
    assert [layer.name for layer in model.layers][:7] == [
        "zero_padding2d_ZeroPadding2D1", "cropping2d_Cropping2D1", "up_sampling2d_UpSampling2D1",
        "batch_normalization_BatchNormalization1", "leaky_re_lu_LeakyReLU1", "re_lu_ReLU1",
        "thresholded_re_lu_ThresholdedReLU1"]


def test_a_softmax_layer_at_the_end_trains_as_a_softmax_dense():
    """A loss fuses with a softmax layer over the last axis as with Dense(activation=softmax)."""
    from trainctl.train.loop import Trainer

    rng = np.random.default_rng(0)
    x = rng.standard_normal((16, 5)).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 16)]
    results = []
    for layers in ([{"type": "dense", "units": 3, "activation": "softmax", "input_shape": [5]}],
                   [{"type": "dense", "units": 3, "input_shape": [5]}, {"type": "softmax"}]):
        model = Sequential(layers, seed=0)
        model.compile("sgd", "categorical_crossentropy")
        trainer = Trainer(model)
        assert trainer.fused
        losses = [trainer.train_batch(x, y, None) for _ in range(3)]
        results.append((losses, model.get_weights()["dense_Dense1/kernel"].copy()))
    assert results[0][0] == results[1][0]
    np.testing.assert_array_equal(results[0][1], results[1][1])


@pytest.mark.parametrize("spec,weight", [
    ({"type": "batch_normalization", "gamma_regularizer": {"type": "l2", "l2": 0.1}}, "gamma"),
    ({"type": "batch_normalization", "beta_regularizer": {"type": "l1", "l1": 0.1}, "beta_initializer": BETA}, "beta"),
    ({"type": "layer_normalization", "gamma_regularizer": {"type": "l2", "l2": 0.1}}, "gamma"),
    ({"type": "prelu", "alpha_regularizer": {"type": "l2", "l2": 0.1}, "alpha_initializer": ALPHA}, "alpha"),
    ({"type": "embedding", "input_dim": 4, "output_dim": 3, "embeddings_regularizer": {"type": "l2", "l2": 0.1}}, "embeddings"),
])
def test_weight_regularizers_reach_the_loss_and_the_gradient(spec, weight):
    model = Sequential([{**spec, "input_shape": [3]}], dtype=np.float64)
    w = next(w for w in model.weights if w.name.endswith("/" + weight))
    kind, amount = next((k, v) for k, v in spec.items() if k.endswith("regularizer"))[1]["type"], 0.1
    expected = amount * (np.sum(w.value ** 2) if kind == "l2" else np.sum(np.abs(w.value)))
    assert model.regularization_loss() == pytest.approx(expected, rel=1e-12) and expected > 0
    w.grad[...] = 0
    model.layers[0].add_regularization_grads()
    np.testing.assert_allclose(w.grad, numeric_grad(lambda _: model.regularization_loss(), w.value), rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("mask_zero", [True, False])
def test_embedding_mask_zero_makes_the_recurrent_layer_skip_padding(mask_zero):
    """With mask_zero the padding token's row never reaches the RNN's output (masked steps
    carry the state over); without it, it does."""
    model = Sequential([{"type": "embedding", "input_dim": 6, "output_dim": 3, "input_length": 5, "mask_zero": mask_zero},
                        {"type": "simple_rnn", "units": 4}], seed=0)
    x = np.array([[3, 5, 2, 0, 0], [1, 4, 0, 0, 0]], np.float32)
    before = model.predict(x).copy()
    model.layers[0].embeddings.value[0] += 1.0
    after = model.predict(x)
    assert np.allclose(before, after) == mask_zero


@pytest.mark.parametrize("spec,shape", [
    ({"type": "zero_padding1d"}, [4, 2]), ({"type": "cropping1d"}, [4, 2]), ({"type": "up_sampling1d"}, [4, 2]),
    ({"type": "spatial_dropout2d", "rate": 0.1}, [4, 4, 2]), ({"type": "elu", "alpha": 0.5}, [3]),
    ({"type": "re_lu", "threshold": 0.5}, [3]), ({"type": "re_lu", "negative_slope": 0.1}, [3]),
])
def test_options_tfjs_lacks_are_refused_by_the_tfjs_export_only(spec, shape):
    from trainctl.errors import ExportRefused
    from trainctl.runs.formats.keras_objects import layer_to_keras

    layer = Sequential([{**spec, "input_shape": shape}]).layers[0]
    with pytest.raises(ExportRefused, match="tfjs export"):
        layer_to_keras(layer, "tfjs")
    assert layer_to_keras(layer, "keras")["class_name"] == layer.class_name


def test_tfjs_export_writes_up_sampling_size_as_a_list():
    from trainctl.runs.formats.keras_objects import layer_to_keras

    layer = Sequential([{"type": "up_sampling2d", "size": 3, "input_shape": [2, 2, 1]}]).layers[0]
    assert layer_to_keras(layer, "tfjs")["config"]["size"] == [3, 3]
