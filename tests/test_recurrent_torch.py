"""LSTM and GRU against PyTorch's nn.LSTM / nn.GRU, a second independent peer: forward outputs
and every gradient from the same weights, with the gate orders and GRU conventions mapped.

Mapping: Keras/TF.js LSTM gates i, f, c, o = torch's i, f, g, o (torch keeps two biases, the
input one takes ours, the recurrent one is zero); our kernel [F, 4u] is torch's weight_ih.T.
GRU: ours is z, r, h, torch's r, z, n; torch's GRU is the reset-after convention (Keras 3
reset_after: true), so that is what it checks; both activations are the standard sigmoid/tanh.
"""

from __future__ import annotations

import numpy as np
import pytest

from trainctl.nn.model import Sequential

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch


def _blocks(a, order, units):
    """Reorder gate blocks along the last axis: order lists our block index per torch block."""
    return np.concatenate([a[..., k * units:(k + 1) * units] for k in order], axis=-1)


def _run(spec, torch_cls, order, x):
    model = Sequential([{**spec, "input_shape": list(x.shape[1:]), "return_sequences": True,
                         "recurrent_activation": "sigmoid",
                         "bias_initializer": {"type": "random_normal", "stddev": 0.3}}],
                       seed=7, dtype=np.float64)
    layer = model.layers[0]
    units = spec["units"]
    net = torch_cls(x.shape[2], units, batch_first=True).double()
    bias = layer.bias.value
    with torch.no_grad():
        net.weight_ih_l0.copy_(torch.from_numpy(_blocks(layer.kernel.value, order, units).T.copy()))
        net.weight_hh_l0.copy_(torch.from_numpy(_blocks(layer.recurrent_kernel.value, order, units).T.copy()))
        if bias.ndim == 2:  # GRU reset_after: input and recurrent biases
            net.bias_ih_l0.copy_(torch.from_numpy(_blocks(bias[0], order, units)))
            net.bias_hh_l0.copy_(torch.from_numpy(_blocks(bias[1], order, units)))
        else:
            net.bias_ih_l0.copy_(torch.from_numpy(_blocks(bias, order, units)))
            net.bias_hh_l0.zero_()
    rng = np.random.default_rng(3)
    r = rng.standard_normal((x.shape[0], x.shape[1], units))
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    out, _ = net(xt)
    (out * torch.from_numpy(r)).sum().backward()
    model.allocate(x.shape[0])
    y = model.forward(x, training=True)
    np.testing.assert_allclose(y, out.detach().numpy(), rtol=1e-10, atol=1e-12)
    dx = layer.backward(r.copy(), True)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(_blocks(layer.kernel.grad, order, units).T, net.weight_ih_l0.grad.numpy(),
                               rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(_blocks(layer.recurrent_kernel.grad, order, units).T, net.weight_hh_l0.grad.numpy(),
                               rtol=1e-9, atol=1e-12)
    bias_grad = layer.bias.grad
    if bias_grad.ndim == 2:
        np.testing.assert_allclose(_blocks(bias_grad[0], order, units), net.bias_ih_l0.grad.numpy(), rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(_blocks(bias_grad[1], order, units), net.bias_hh_l0.grad.numpy(), rtol=1e-9, atol=1e-12)
    else:
        np.testing.assert_allclose(_blocks(bias_grad, order, units), net.bias_ih_l0.grad.numpy(), rtol=1e-9, atol=1e-12)


def _x(n=3, steps=6, features=4):
    return np.random.default_rng(0).standard_normal((n, steps, features))


def test_lstm_matches_torch():
    _run({"type": "lstm", "units": 5}, torch.nn.LSTM, [0, 1, 2, 3], _x())


def test_gru_reset_after_matches_torch():
    _run({"type": "gru", "units": 5, "reset_after": True}, torch.nn.GRU, [1, 0, 2], _x())
