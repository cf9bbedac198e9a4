"""Whole training runs against PyTorch: same initial weights, same batches, same optimizer
formulas → the same weights after 50 steps. Skipped when torch is not installed
(`pip install torch==2.13.0` installs the local CPU build)."""

from __future__ import annotations

import numpy as np
import pytest

from trainctl.nn.model import Sequential

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch


def data(n=800, features=20, classes=4):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, features)).astype(np.float32)
    labels = np.argmax(x @ rng.standard_normal((features, classes)).astype(np.float32), axis=1)
    return x, np.eye(classes, dtype=np.float32)[labels]


def torch_run(model: Sequential, x, y, make_optimizer, batch_size: int, steps: int):
    torch.manual_seed(0)
    weights = model.get_weights()
    net = torch.nn.Sequential(torch.nn.Linear(20, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))
    with torch.no_grad():
        for index, name in ((0, "dense_Dense1"), (2, "dense_Dense2")):
            net[index].weight.copy_(torch.from_numpy(weights[f"{name}/kernel"].T.copy()))
            net[index].bias.copy_(torch.from_numpy(weights[f"{name}/bias"].copy()))
    optimizer = make_optimizer(net.parameters())
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    for step in range(steps):
        xb, yb = xt[step * batch_size:(step + 1) * batch_size], yt[step * batch_size:(step + 1) * batch_size]
        optimizer.zero_grad()
        loss = -(yb * torch.log_softmax(net(xb), dim=1)).sum(dim=1).mean()
        loss.backward()
        optimizer.step()
    return {"dense_Dense1/kernel": net[0].weight.detach().numpy().T, "dense_Dense1/bias": net[0].bias.detach().numpy(),
            "dense_Dense2/kernel": net[2].weight.detach().numpy().T, "dense_Dense2/bias": net[2].bias.detach().numpy()}


@pytest.mark.parametrize("spec,make_optimizer", [
    ({"type": "sgd", "learning_rate": 0.1}, lambda p: torch.optim.SGD(p, lr=0.1)),
    ({"type": "momentum", "learning_rate": 0.05, "momentum": 0.9}, lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9)),
    ({"type": "adam", "learning_rate": 0.01}, lambda p: torch.optim.Adam(p, lr=0.01, eps=1e-7)),
])
def test_fifty_steps_match_pytorch(spec, make_optimizer):
    x, y = data()
    model = Sequential([{"type": "dense", "units": 16, "activation": "relu", "input_shape": [20]},
                        {"type": "dense", "units": 4, "activation": "softmax"}], seed=0)
    model.compile(optimizer=spec, loss="categorical_crossentropy")
    expected = torch_run(model, x, y, make_optimizer, batch_size=16, steps=50)
    model.fit(x, y, epochs=1, batch_size=16, shuffle=False)  # 800 / 16 = 50 steps
    for name, value in model.get_weights().items():
        np.testing.assert_allclose(value, expected[name], atol=1e-5, rtol=0, err_msg=name)
