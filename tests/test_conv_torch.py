"""Convolution and pooling against PyTorch, an independent implementation: forward outputs
and the gradients of input and weights (float64). TF.js 'same' padding is asymmetric
(pad_total // 2 before), so the torch side pads explicitly with F.pad."""

from __future__ import annotations

import numpy as np
import pytest

from tests.reference.conv import out_and_pad
from trainctl.nn.model import Sequential

torch = pytest.importorskip("torch")
F = torch.nn.functional
pytestmark = pytest.mark.torch


def run_ours(spec, x, r):
    """forward, then backward of sum(r * y): (y, dx, {weight: grad})."""
    model = Sequential([{**spec, "input_shape": list(x.shape[1:])}], seed=5, dtype=np.float64)
    model.allocate(x.shape[0])
    layer = model.layers[0]
    y = layer.forward(x, training=True).copy()
    dx = layer.backward(r(y.shape), need_dx=True).copy()
    return layer, y, dx, {w.name.split("/")[1]: w.grad.copy() for w in layer.weights}


def tf_pads(size, kernel, stride, dilation, padding):
    out, before = out_and_pad(size, kernel, stride, dilation, padding)
    effective = (kernel - 1) * dilation + 1
    total = max((out - 1) * stride + effective - size, 0)
    return before, total - before


def nchw(a):
    return torch.tensor(np.ascontiguousarray(a.transpose(0, 3, 1, 2)), requires_grad=True)


@pytest.mark.parametrize("padding", ["valid", "same"])
@pytest.mark.parametrize("strides,dilation", [(1, 1), (2, 1), (1, 2), ((2, 1), 1)])
def test_conv2d_matches_torch(padding, strides, dilation):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 9, 8, 4))
    spec = {"type": "conv2d", "filters": 5, "kernel_size": [3, 2], "strides": list(np.broadcast_to(strides, 2)),
            "padding": padding, "dilation_rate": dilation, "activation": "relu"}
    r = rng.standard_normal
    r_value = {}

    def fixed(shape):
        r_value.setdefault("r", r(shape))
        return r_value["r"].copy()

    layer, y, dx, grads = run_ours(spec, x, fixed)
    s = tuple(np.broadcast_to(strides, 2))
    d = tuple(np.broadcast_to(dilation, 2))
    xt = nchw(x)
    kernel = torch.tensor(layer.kernel.value.transpose(3, 2, 0, 1).copy(), requires_grad=True)  # [f, c, kh, kw]
    bias = torch.tensor(layer.bias.value.copy(), requires_grad=True)
    top, bottom = tf_pads(9, 3, s[0], d[0], padding)
    left, right = tf_pads(8, 2, s[1], d[1], padding)
    yt = torch.relu(F.conv2d(F.pad(xt, (left, right, top, bottom)), kernel, bias, stride=s, dilation=d))
    np.testing.assert_allclose(y, yt.detach().numpy().transpose(0, 2, 3, 1), rtol=1e-10, atol=1e-12)
    (yt * torch.tensor(r_value["r"].transpose(0, 3, 1, 2).copy())).sum().backward()
    np.testing.assert_allclose(dx, xt.grad.numpy().transpose(0, 2, 3, 1), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(grads["kernel"], kernel.grad.numpy().transpose(2, 3, 1, 0), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(grads["bias"], bias.grad.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kind", ["max", "average"])
@pytest.mark.parametrize("padding", ["valid", "same"])
@pytest.mark.parametrize("pool,strides", [(2, None), (3, 2), ((3, 2), (1, 2))])
def test_pooling2d_matches_torch(kind, padding, pool, strides):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 7, 9, 3))
    p = tuple(np.broadcast_to(pool, 2))
    s = p if strides is None else tuple(np.broadcast_to(strides, 2))
    spec = {"type": f"{kind}_pooling2d", "pool_size": list(p), "strides": list(s), "padding": padding}
    r = rng.standard_normal((2, *Sequential([{**spec, "input_shape": [7, 9, 3]}]).output_shape))
    _, y, dx, _ = run_ours(spec, x, lambda shape: r.copy())
    xt = nchw(x)
    top, bottom = tf_pads(7, p[0], s[0], 1, padding)
    left, right = tf_pads(9, p[1], s[1], 1, padding)
    if kind == "max":
        yt = F.max_pool2d(F.pad(xt, (left, right, top, bottom), value=-np.inf), p, s)
    else:  # TF.js divides by the real pixels of each window: pool the values and the ones
        ones = torch.ones_like(xt)
        pad = (left, right, top, bottom)
        yt = F.avg_pool2d(F.pad(xt, pad), p, s) / F.avg_pool2d(F.pad(ones, pad), p, s)
    np.testing.assert_allclose(y, yt.detach().numpy().transpose(0, 2, 3, 1), rtol=1e-10, atol=1e-12)
    (yt * torch.tensor(r.transpose(0, 3, 1, 2).copy())).sum().backward()
    np.testing.assert_allclose(dx, xt.grad.numpy().transpose(0, 2, 3, 1), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("strides", [1, 2])
def test_conv2d_transpose_matches_torch(strides):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 4, 5, 3))
    spec = {"type": "conv2d_transpose", "filters": 2, "kernel_size": 3, "strides": strides, "padding": "valid"}
    r = rng.standard_normal((2, *Sequential([{**spec, "input_shape": [4, 5, 3]}]).output_shape))
    layer, y, dx, grads = run_ours(spec, x, lambda shape: r.copy())
    xt = nchw(x)
    kernel = torch.tensor(layer.kernel.value.transpose(3, 2, 0, 1).copy(), requires_grad=True)  # [in, f, kh, kw]
    yt = F.conv_transpose2d(xt, kernel, stride=strides)  # valid, kernel >= stride: same size as TF.js
    np.testing.assert_allclose(y, yt.detach().numpy().transpose(0, 2, 3, 1), rtol=1e-10, atol=1e-12)
    (yt * torch.tensor(r.transpose(0, 3, 1, 2).copy())).sum().backward()
    np.testing.assert_allclose(dx, xt.grad.numpy().transpose(0, 2, 3, 1), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(grads["kernel"], kernel.grad.numpy().transpose(2, 3, 1, 0), rtol=1e-10, atol=1e-12)


def test_depthwise_conv2d_matches_torch_grouped_conv():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 6, 7, 3))
    spec = {"type": "depthwise_conv2d", "kernel_size": 3, "depth_multiplier": 2, "padding": "same", "strides": 2}
    r = rng.standard_normal((2, *Sequential([{**spec, "input_shape": [6, 7, 3]}]).output_shape))
    layer, y, dx, grads = run_ours(spec, x, lambda shape: r.copy())
    xt = nchw(x)
    k = layer.depthwise_kernel.value  # [kh, kw, c, m] → torch [c * m, 1, kh, kw], channel c * m + k
    kernel = torch.tensor(k.transpose(2, 3, 0, 1).reshape(6, 1, 3, 3).copy(), requires_grad=True)
    top, bottom = tf_pads(6, 3, 2, 1, "same")
    left, right = tf_pads(7, 3, 2, 1, "same")
    yt = F.conv2d(F.pad(xt, (left, right, top, bottom)), kernel, stride=2, groups=3)
    np.testing.assert_allclose(y, yt.detach().numpy().transpose(0, 2, 3, 1), rtol=1e-10, atol=1e-12)
    (yt * torch.tensor(r.transpose(0, 3, 1, 2).copy())).sum().backward()
    np.testing.assert_allclose(dx, xt.grad.numpy().transpose(0, 2, 3, 1), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(grads["depthwise_kernel"],
                               kernel.grad.numpy().reshape(3, 2, 3, 3).transpose(2, 3, 0, 1), rtol=1e-10, atol=1e-12)
