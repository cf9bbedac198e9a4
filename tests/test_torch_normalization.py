"""Batch and layer normalization against PyTorch (an independent implementation): outputs,
gradients for the input, gamma and beta, and the moving statistics. Skipped without torch."""

from __future__ import annotations

import numpy as np
import pytest

from trainctl.nn.model import Sequential

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch


def run_ours(spec, x, r, dtype):
    model = Sequential([{**spec, "input_shape": list(x.shape[1:])}], seed=1, dtype=dtype)
    layer = model.layers[0]
    model.allocate(x.shape[0])
    y = layer.forward(x.astype(dtype), True).copy()
    dx = layer.backward(r.astype(dtype), True).copy()
    return layer, y, dx


@pytest.mark.parametrize("dtype,rtol", [(np.float64, 1e-10), (np.float32, 2e-4)])
@pytest.mark.parametrize("shape,axis,torch_layout", [
    ((16, 5), -1, lambda a: a),                                  # [n, features]: BatchNorm1d
    ((8, 4, 3, 6), -1, lambda a: np.moveaxis(a, -1, 1)),         # channels_last images: BatchNorm2d on NCHW
    ((8, 6, 4, 3), 1, lambda a: a),                              # channels_first images
])
def test_batch_norm_matches_pytorch(shape, axis, torch_layout, dtype, rtol):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape) * 2 + 0.7
    r = rng.standard_normal(shape)
    spec = {"type": "batch_normalization", "axis": axis, "momentum": 0.9,
            "gamma_initializer": {"type": "random_uniform", "minval": 0.5, "maxval": 1.5},
            "beta_initializer": {"type": "random_uniform", "minval": -0.5, "maxval": 0.5}}
    layer, y, dx = run_ours(spec, x, r, dtype)
    channels = layer.gamma.value.size
    torch_dtype = torch.float64 if dtype == np.float64 else torch.float32
    bn = (torch.nn.BatchNorm1d if len(shape) == 2 else torch.nn.BatchNorm2d)(channels, eps=1e-3, momentum=0.1, dtype=torch_dtype)
    with torch.no_grad():
        bn.weight.copy_(torch.from_numpy(layer.gamma.value.astype(dtype)))
        bn.bias.copy_(torch.from_numpy(layer.beta.value.astype(dtype)))
    xt = torch.tensor(torch_layout(x).astype(dtype), requires_grad=True)
    yt = bn.train()(xt)
    yt.backward(torch.from_numpy(np.ascontiguousarray(torch_layout(r)).astype(dtype)))
    np.testing.assert_allclose(torch_layout(y), yt.detach().numpy(), rtol=rtol, atol=rtol)
    np.testing.assert_allclose(torch_layout(dx), xt.grad.numpy(), rtol=rtol, atol=rtol)
    np.testing.assert_allclose(layer.gamma.grad, bn.weight.grad.numpy(), rtol=rtol, atol=rtol)
    np.testing.assert_allclose(layer.beta.grad, bn.bias.grad.numpy(), rtol=rtol, atol=rtol)
    # moving mean: the same exponential average (TF.js momentum 0.9 = PyTorch momentum 0.1)
    np.testing.assert_allclose(layer.moving_mean.value, bn.running_mean.numpy(), rtol=rtol, atol=rtol)
    # moving variance: PyTorch averages the unbiased batch variance, TF.js the biased one
    count = x.size // channels
    unbiased = bn.running_var.numpy() - 0.9  # 0.1 · unbiased variance
    np.testing.assert_allclose(layer.moving_variance.value - 0.9, unbiased * (count - 1) / count, rtol=rtol * 10, atol=rtol)


@pytest.mark.parametrize("shape", [(6, 7), (4, 3, 5)])
def test_layer_norm_matches_pytorch(shape):
    rng = np.random.default_rng(1)
    x, r = rng.standard_normal(shape) + 0.3, rng.standard_normal(shape)
    spec = {"type": "layer_normalization", "gamma_initializer": {"type": "random_uniform", "minval": 0.5, "maxval": 1.5},
            "beta_initializer": {"type": "random_uniform", "minval": -0.5, "maxval": 0.5}}
    layer, y, dx = run_ours(spec, x, r, np.float64)
    ln = torch.nn.LayerNorm(shape[-1], eps=1e-3, dtype=torch.float64)
    with torch.no_grad():
        ln.weight.copy_(torch.from_numpy(layer.gamma.value))
        ln.bias.copy_(torch.from_numpy(layer.beta.value))
    xt = torch.tensor(x, requires_grad=True)
    out = ln(xt)
    out.backward(torch.from_numpy(r))
    np.testing.assert_allclose(y, out.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(layer.gamma.grad, ln.weight.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(layer.beta.grad, ln.bias.grad.numpy(), rtol=1e-10, atol=1e-12)
