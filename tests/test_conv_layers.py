"""Convolution and pooling layers: finite-difference gradients (float64) for the input and
every weight over the option grid, forward outputs against the plain-numpy references in
tests/reference/conv.py, TF.js names, shapes, defaults and refusals."""

from __future__ import annotations

import numpy as np
import pytest

from tests.reference import conv as ref
from tests.reference.gradients import numeric_grad
from trainctl.errors import TrainctlError
from trainctl.nn.model import Sequential


def single_layer(spec, input_shape, dtype=np.float64, n=2):
    model = Sequential([{**spec, "input_shape": list(input_shape)}], seed=3, dtype=dtype)
    model.allocate(n)
    return model, model.layers[0]


def check_gradients(spec, input_shape, n=2, rtol=1e-6, atol=1e-8):
    """Loss = sum(R * layer(x)): backward(R) must match central differences for x and every weight."""
    model, layer = single_layer(spec, input_shape, n=n)
    rng = np.random.default_rng(7)
    x = rng.standard_normal((n, *input_shape))
    r = rng.standard_normal((n, *model.output_shape))
    for w in layer.weights:  # biases away from zero, so the bias path is exercised
        w.value[...] = rng.standard_normal(w.value.shape) * 0.5

    def loss() -> float:
        return float(np.sum(r * layer.forward(x, training=True)))

    loss()
    dx = layer.backward(r.copy(), need_dx=True).copy()
    analytic = {w.name: w.grad.copy() for w in layer.weights}
    loss()
    layer.backward(r.copy(), need_dx=True)  # grads are overwritten, never accumulated
    for w in layer.weights:
        np.testing.assert_array_equal(w.grad, analytic[w.name])
    np.testing.assert_allclose(dx, numeric_grad(lambda _: loss(), x), rtol=rtol, atol=atol, err_msg="input")
    for w in layer.weights:
        expected = numeric_grad(lambda _: loss(), w.value)
        np.testing.assert_allclose(analytic[w.name], expected, rtol=rtol, atol=atol, err_msg=w.name)
    return model, layer


def to_first(shape):
    return (shape[-1], *shape[:-1])


GEOMETRY_2D = [(1, 1), (2, 1), (1, 2), ([2, 1], 1), (1, [1, 2]), ([1, 3], 1)]  # (strides, dilation_rate)


@pytest.mark.parametrize("channels", [1, 3])  # 1: the transposed column matrix
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("strides,dilation", GEOMETRY_2D)
@pytest.mark.parametrize("padding", ["valid", "same"])
def test_conv2d_gradients_and_forward(padding, strides, dilation, data_format, channels):
    shape = (7, 6, channels) if data_format == "channels_last" else (channels, 7, 6)
    spec = {"type": "conv2d", "filters": 4, "kernel_size": [3, 2], "strides": strides, "padding": padding,
            "dilation_rate": dilation, "activation": "tanh", "data_format": data_format}
    model, layer = check_gradients(spec, shape)
    x = np.random.default_rng(0).standard_normal((2, *shape))
    x_last = x if data_format == "channels_last" else x.transpose(0, 2, 3, 1)
    s = (strides, strides) if isinstance(strides, int) else strides
    d = (dilation, dilation) if isinstance(dilation, int) else dilation
    expected = np.tanh(ref.conv2d(x_last, layer.kernel.value, s, d, padding) + layer.bias.value)
    got = layer.forward(x, training=False)
    if data_format == "channels_first":
        got = got.transpose(0, 2, 3, 1)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


def test_conv2d_pointwise_without_bias_and_with_regularizers():
    spec = {"type": "conv2d", "filters": 5, "kernel_size": 1, "use_bias": False, "activation": "sigmoid",
            "kernel_regularizer": {"type": "l2", "l2": 0.1}}
    _, layer = check_gradients(spec, (4, 3, 6))
    assert [w.name for w in layer.weights] == ["conv2d_Conv2D1/kernel"]
    assert layer.regularization_loss() > 0


def test_conv2d_activity_regularizer_gradient():
    model, layer = single_layer({"type": "conv2d", "filters": 3, "kernel_size": 2, "activation": "tanh",
                                 "activity_regularizer": {"type": "l1l2", "l1": 0.01, "l2": 0.1}}, (4, 4, 2))
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 4, 4, 2))
    r = rng.standard_normal((2, *model.output_shape))

    def total() -> float:
        return float(np.sum(r * layer.forward(x, training=True))) + layer.activity_loss(2)

    total()
    layer.backward(r.copy(), need_dx=True)
    np.testing.assert_allclose(layer.kernel.grad, numeric_grad(lambda _: total(), layer.kernel.value),
                               rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("strides,dilation", [(1, 1), (2, 1), (1, 2), (3, 1)])
@pytest.mark.parametrize("padding", ["valid", "same"])
def test_conv1d_gradients_and_forward(padding, strides, dilation, data_format, channels):
    shape = (9, channels) if data_format == "channels_last" else (channels, 9)
    spec = {"type": "conv1d", "filters": 4, "kernel_size": 3, "strides": strides, "padding": padding,
            "dilation_rate": dilation, "activation": "elu", "data_format": data_format}
    model, layer = check_gradients(spec, shape)
    x = np.random.default_rng(0).standard_normal((2, *shape))
    x_last = x if data_format == "channels_last" else x.transpose(0, 2, 1)
    z = ref.conv2d(x_last[:, None], layer.kernel.value[None], (1, strides), (1, dilation), padding)[:, 0]
    z = z + layer.bias.value
    expected = np.where(z >= 0, z, np.expm1(np.minimum(z, 0)))
    got = layer.forward(x, training=False)
    if data_format == "channels_first":
        got = got.transpose(0, 2, 1)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("kernel_size,strides", [(3, 1), ([3, 2], 2), (2, [2, 3]), (1, 3)])
@pytest.mark.parametrize("padding", ["valid", "same"])
def test_conv2d_transpose_gradients_and_forward(padding, kernel_size, strides, data_format):
    shape = (4, 3, 3) if data_format == "channels_last" else (3, 4, 3)
    spec = {"type": "conv2d_transpose", "filters": 2, "kernel_size": kernel_size, "strides": strides,
            "padding": padding, "activation": "tanh", "data_format": data_format}
    model, layer = check_gradients(spec, shape)
    x = np.random.default_rng(0).standard_normal((2, *shape))
    x_last = x if data_format == "channels_last" else x.transpose(0, 2, 3, 1)
    s = (strides, strides) if isinstance(strides, int) else strides
    expected = np.tanh(ref.conv2d_transpose(x_last, layer.kernel.value, s, padding) + layer.bias.value)
    got = layer.forward(x, training=False)
    if data_format == "channels_first":
        got = got.transpose(0, 2, 3, 1)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
    assert layer.kernel.value.shape[-2:] == (2, 3)  # [kh, kw, filters, in_channels] as TF.js


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("strides,multiplier", [(1, 1), (2, 1), (1, 2), ([2, 1], 3)])
@pytest.mark.parametrize("padding", ["valid", "same"])
def test_depthwise_conv2d_gradients_and_forward(padding, strides, multiplier, data_format):
    shape = (6, 5, 3) if data_format == "channels_last" else (3, 6, 5)
    spec = {"type": "depthwise_conv2d", "kernel_size": [3, 2], "strides": strides, "padding": padding,
            "depth_multiplier": multiplier, "activation": "tanh", "data_format": data_format}
    model, layer = check_gradients(spec, shape)
    x = np.random.default_rng(0).standard_normal((2, *shape))
    x_last = x if data_format == "channels_last" else x.transpose(0, 2, 3, 1)
    s = (strides, strides) if isinstance(strides, int) else strides
    expected = np.tanh(ref.depthwise_conv2d(x_last, layer.depthwise_kernel.value, s, (1, 1), padding)
                       + layer.bias.value)
    got = layer.forward(x, training=False)
    if data_format == "channels_first":
        got = got.transpose(0, 2, 3, 1)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("strides,dilation,multiplier", [(1, 1, 1), (2, 1, 2), (1, 2, 1)])
@pytest.mark.parametrize("padding", ["valid", "same"])
def test_separable_conv2d_gradients_and_forward(padding, strides, dilation, multiplier, data_format):
    shape = (7, 6, 2) if data_format == "channels_last" else (2, 7, 6)
    spec = {"type": "separable_conv2d", "filters": 3, "kernel_size": 3, "strides": strides, "padding": padding,
            "dilation_rate": dilation, "depth_multiplier": multiplier, "activation": "tanh",
            "data_format": data_format}
    model, layer = check_gradients(spec, shape)
    x = np.random.default_rng(0).standard_normal((2, *shape))
    x_last = x if data_format == "channels_last" else x.transpose(0, 2, 3, 1)
    mid = ref.depthwise_conv2d(x_last, layer.depthwise_kernel.value, (strides,) * 2, (dilation,) * 2, padding)
    expected = np.tanh(mid @ layer.pointwise_kernel.value[0, 0] + layer.bias.value)
    got = layer.forward(x, training=False)
    if data_format == "channels_first":
        got = got.transpose(0, 2, 3, 1)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
    assert [w.name.split("/")[1] for w in layer.weights] == ["depthwise_kernel", "pointwise_kernel", "bias"]


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("pool_size,strides", [(2, None), ([3, 2], None), (2, 1), ([3, 2], [2, 1]), (3, 2)])
@pytest.mark.parametrize("padding", ["valid", "same"])
@pytest.mark.parametrize("kind", ["max", "average"])
def test_pooling2d_gradients_and_forward(kind, padding, pool_size, strides, data_format):
    shape = (7, 6, 3) if data_format == "channels_last" else (3, 7, 6)
    spec = {"type": f"{kind}_pooling2d", "pool_size": pool_size, "padding": padding, "data_format": data_format}
    if strides is not None:
        spec["strides"] = strides
    check_gradients(spec, shape)
    model, layer = single_layer(spec, shape)
    x = np.random.default_rng(0).standard_normal((2, *shape))
    x_last = x if data_format == "channels_last" else x.transpose(0, 2, 3, 1)
    p = (pool_size, pool_size) if isinstance(pool_size, int) else pool_size
    s = p if strides is None else ((strides, strides) if isinstance(strides, int) else strides)
    expected = ref.pool2d(x_last, p, s, padding, "max" if kind == "max" else "avg")
    got = layer.forward(x, training=False)
    if data_format == "channels_first":
        got = got.transpose(0, 2, 3, 1)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("pool_size,strides", [(2, None), (3, None), (3, 1), (2, 3)])
@pytest.mark.parametrize("padding", ["valid", "same"])
@pytest.mark.parametrize("kind", ["max", "average"])
def test_pooling1d_gradients_and_forward(kind, padding, pool_size, strides):
    spec = {"type": f"{kind}_pooling1d", "pool_size": pool_size, "padding": padding}
    if strides is not None:
        spec["strides"] = strides
    check_gradients(spec, (9, 3))
    model, layer = single_layer(spec, (9, 3))
    x = np.random.default_rng(0).standard_normal((2, 9, 3))
    s = pool_size if strides is None else strides
    expected = ref.pool2d(x[:, :, None], (pool_size, 1), (s, 1), padding, "max" if kind == "max" else "avg")
    np.testing.assert_allclose(layer.forward(x, training=False), expected[:, :, 0], rtol=1e-12, atol=1e-12)


def test_max_pooling_routes_the_gradient_to_the_first_maximum():
    model, layer = single_layer({"type": "max_pooling2d", "pool_size": 2}, (2, 2, 1), n=1)
    x = np.array([[[[1.0], [3.0]], [[3.0], [0.0]]]])  # tie: the first 3 (row-major) wins, as TF.js
    assert layer.forward(x, training=True)[0, 0, 0, 0] == 3.0
    dx = layer.backward(np.ones((1, 1, 1, 1)))
    np.testing.assert_array_equal(dx[0, :, :, 0], [[0.0, 1.0], [0.0, 0.0]])


@pytest.mark.parametrize("type_id,shape,data_format", [
    ("global_average_pooling1d", (5, 3), None), ("global_max_pooling1d", (5, 3), None),
    ("global_average_pooling2d", (4, 3, 2), "channels_last"), ("global_max_pooling2d", (4, 3, 2), "channels_last"),
    ("global_average_pooling2d", (2, 4, 3), "channels_first"), ("global_max_pooling2d", (2, 4, 3), "channels_first"),
])
def test_global_pooling_gradients_and_forward(type_id, shape, data_format):
    spec = {"type": type_id} if data_format is None else {"type": type_id, "data_format": data_format}
    check_gradients(spec, shape)
    model, layer = single_layer(spec, shape)
    x = np.random.default_rng(0).standard_normal((2, *shape))
    axes = (2, 3) if data_format == "channels_first" else tuple(range(1, len(shape)))
    expected = x.max(axis=axes) if "max" in type_id else x.mean(axis=axes)
    np.testing.assert_allclose(layer.forward(x, training=False), expected, rtol=1e-12, atol=1e-12)
    assert model.output_shape == (2 if data_format == "channels_first" else shape[-1],)


def test_global_max_pooling_gives_every_tied_maximum_the_gradient():
    model, layer = single_layer({"type": "global_max_pooling1d"}, (3, 1), n=1)
    layer.forward(np.array([[[2.0], [2.0], [1.0]]]), training=True)
    np.testing.assert_array_equal(layer.backward(np.ones((1, 1)))[0, :, 0], [1.0, 1.0, 0.0])  # tfjs max grad


MNIST_CNN = [
    {"type": "conv2d", "filters": 8, "kernel_size": 5, "activation": "relu", "kernel_initializer": "variance_scaling",
     "input_shape": [28, 28, 1]},
    {"type": "max_pooling2d", "pool_size": [2, 2], "strides": [2, 2]},
    {"type": "conv2d", "filters": 16, "kernel_size": 5, "activation": "relu", "kernel_initializer": "variance_scaling"},
    {"type": "maxPooling2d", "poolSize": 2, "strides": 2},
    {"type": "flatten"},
    {"type": "dense", "units": 10, "activation": "softmax", "kernelInitializer": "varianceScaling"},
]


def test_mnist_cnn_has_tfjs_names_shapes_and_param_counts():
    model = Sequential(MNIST_CNN)
    rows = [(r.name, r.class_name, r.output_shape, r.n_params) for r in model.summary_rows()]
    assert rows == [
        ("conv2d_Conv2D1", "Conv2D", (None, 24, 24, 8), 208),
        ("max_pooling2d_MaxPooling2D1", "MaxPooling2D", (None, 12, 12, 8), 0),
        ("conv2d_Conv2D2", "Conv2D", (None, 8, 8, 16), 3216),
        ("max_pooling2d_MaxPooling2D2", "MaxPooling2D", (None, 4, 4, 16), 0),
        ("flatten_Flatten1", "Flatten", (None, 256), 0),
        ("dense_Dense1", "Dense", (None, 10), 2570),
    ]
    assert model.param_totals().total == 5994
    assert {w.name: w.value.shape for w in model.weights}["conv2d_Conv2D1/kernel"] == (5, 5, 1, 8)


def test_tfjs_defaults():
    model = Sequential([{"type": "conv2d", "filters": 2, "kernel_size": 3, "input_shape": [5, 5, 1]},
                        {"type": "max_pooling2d"}, {"type": "separable_conv2d", "filters": 2, "kernel_size": 1},
                        {"type": "depthwise_conv2d", "kernel_size": 1}])
    conv, pool, separable, depthwise = model.layers
    p = conv.params
    assert (p.strides, p.padding, p.data_format, p.dilation_rate, p.activation, p.use_bias) == \
        (1, "valid", "channels_last", 1, "linear", True)
    assert p.kernel_initializer["type"] == "glorot_normal" and p.bias_initializer["type"] == "zeros"
    assert (pool.pool_size, pool.strides, pool.params.padding) == ((2, 2), (2, 2), "valid")
    assert separable.params.depthwise_initializer["type"] == "glorot_uniform"
    assert separable.params.depth_multiplier == 1
    assert depthwise.params.depthwise_initializer["type"] == "glorot_normal"
    assert model.output_shape == (1, 1, 2)


def test_same_padding_is_asymmetric_as_tfjs():
    """4 pixels, kernel 2, stride 1, 'same': TF.js pads 0 before and 1 after."""
    model, layer = single_layer({"type": "conv1d", "filters": 1, "kernel_size": 2, "padding": "same",
                                 "use_bias": False, "kernel_initializer": "ones"}, (4, 1), n=1)
    y = layer.forward(np.array([[[1.0], [2.0], [3.0], [4.0]]]), training=False)
    np.testing.assert_array_equal(y[0, :, 0], [3.0, 5.0, 7.0, 4.0])


@pytest.mark.parametrize("spec,shape,message", [
    ({"type": "conv2d", "filters": 2, "kernel_size": 3, "strides": 2, "dilation_rate": 2}, (9, 9, 1),
     "cannot both exceed 1"),
    ({"type": "conv2d", "filters": 2, "kernel_size": 5}, (4, 9, 1), "smaller than the kernel"),
    ({"type": "conv2d", "filters": 2, "kernel_size": 3}, (9, 1), "expects inputs of rank 4"),
    ({"type": "conv2d", "filters": 2, "kernel_size": [3, 3, 3]}, (9, 9, 1), "kernel_size needs 2 values"),
    ({"type": "depthwise_conv2d", "kernel_size": 3, "dilation_rate": 2}, (9, 9, 1), "ignores"),
    ({"type": "max_pooling2d", "pool_size": 4}, (3, 9, 1), "smaller than pool_size"),
    ({"type": "conv2d", "filters": 2, "kernel_size": 1, "activation": "softmax", "data_format": "channels_first"},
     (2, 3, 3), "channel axis"),
])
def test_bad_options_are_located_one_line_errors(spec, shape, message):
    with pytest.raises(TrainctlError, match=message) as error:
        Sequential([{**spec, "input_shape": list(shape)}])
    assert "\n" not in str(error.value) and "model.layers.0" in str(error.value)


@pytest.mark.parametrize("spec,message", [
    ({"type": "conv2d", "kernel_size": 3}, "filters"),
    ({"type": "conv2d", "filters": 2, "kernel_size": 3, "padding": "causal"}, "padding"),
    ({"type": "conv2d", "filters": 2, "kernel_size": 3, "data_format": "nhwc"}, "data_format"),
    ({"type": "separable_conv2d", "filters": 2, "kernel_size": 3, "kernel_initializer": "ones"}, "depthwise_initializer"),
    ({"type": "max_pooling1d", "data_format": "channels_first"}, "data_format"),
])
def test_invalid_params_are_config_errors(spec, message):
    with pytest.raises(TrainctlError, match=message):
        Sequential([{**spec, "input_shape": [8, 8, 2]}])


def test_camel_case_tfjs_spellings_are_accepted():
    model = Sequential([{"type": "conv2d", "filters": 2, "kernelSize": [3, 3], "dataFormat": "channelsFirst",
                         "dilationRate": 1, "useBias": False, "input_shape": [1, 5, 5]},
                        {"type": "globalAveragePooling2d", "dataFormat": "channelsFirst"}])
    assert model.layers[0].channels_first and model.output_shape == (2,)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_float32_and_float64_and_smaller_last_batch(dtype):
    model = Sequential(MNIST_CNN, dtype=dtype)
    model.allocate(8)
    x = np.random.default_rng(0).random((5, 28, 28, 1)).astype(dtype)
    y = model.forward(x, training=True)
    assert y.dtype == dtype and y.shape == (5, 10)
    np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-5)
    model.backward(np.ones_like(y))
    assert all(np.isfinite(w.grad).all() for w in model.weights)


@pytest.mark.parametrize("channels", [1, 3])
def test_conv_in_chunks_of_samples_gives_the_same_outputs_and_gradients(monkeypatch, channels):
    """The column matrix is built per chunk of samples; one sample per chunk (the extreme)
    must change nothing, and the gradients still match finite differences."""
    from trainctl.nn.layers import conv

    spec = {"type": "conv2d", "filters": 4, "kernel_size": 3, "strides": [2, 1], "padding": "same",
            "activation": "tanh"}
    x = np.random.default_rng(4).standard_normal((3, 7, 6, channels))

    def outputs_and_grads():
        model, layer = single_layer(spec, (7, 6, channels), n=3)
        y = layer.forward(x, training=True).copy()
        dx = layer.backward(np.cos(y), need_dx=True).copy()
        return y, dx, layer.kernel.grad.copy(), layer.bias.grad.copy()

    whole = outputs_and_grads()
    monkeypatch.setattr(conv, "COLUMN_CHUNK_BYTES", 1)
    assert single_layer(spec, (7, 6, channels), n=3)[1]._chunk == 1
    for a, b in zip(whole, outputs_and_grads()):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-13)
    check_gradients(spec, (7, 6, channels), n=3)


def test_model_json_round_trip_keeps_every_conv_and_pooling_option():
    layers = [
        {"type": "conv2d", "filters": 3, "kernel_size": [3, 2], "strides": [1, 2], "padding": "same",
         "data_format": "channels_first", "activation": "relu", "input_shape": [2, 9, 8]},
        {"type": "average_pooling2d", "pool_size": 2, "strides": 1, "padding": "same", "data_format": "channels_first"},
        {"type": "separable_conv2d", "filters": 4, "kernel_size": 3, "depth_multiplier": 2, "dilation_rate": 2, "padding": "same",
         "data_format": "channels_first", "pointwise_initializer": "ones"},
        {"type": "global_max_pooling2d", "data_format": "channels_first"},
    ]
    model = Sequential(layers, seed=2)
    again = Sequential.from_json(model.to_json(), seed=2)
    assert [l.get_config() for l in again.layers] == [l.get_config() for l in model.layers]
    for a, b in zip(again.weights, model.weights):
        assert a.name == b.name and a.value.shape == b.value.shape
        np.testing.assert_array_equal(a.value, b.value)
    assert np.all(model.layers[2].pointwise_kernel.value == 1.0)
