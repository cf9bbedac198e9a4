"""The dense MLP against real TensorFlow.js 4.22 in Node: the exported model loads with
tf.loadLayersModel, predicts what trainctl predicts, and two training steps compiled from
the exported trainingConfig (SGD, Adam) give trainctl's losses and weights to 1e-5."""

from __future__ import annotations

import numpy as np
import pytest

from trainctl.nn.model import Sequential

pytestmark = pytest.mark.tfjs

ATOL = 1e-5


def mlp(seed=0):
    return Sequential([{"type": "dense", "units": 16, "activation": "relu", "input_shape": [20]},
                       {"type": "dense", "units": 4, "activation": "softmax"}], seed=seed)


def data(n=64, features=20, classes=4):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((n, features)).astype(np.float32)
    labels = np.argmax(x @ rng.standard_normal((features, classes)).astype(np.float32), axis=1)
    return x, np.eye(classes, dtype=np.float32)[labels]


def test_mlp_predictions_equal_tfjs(tfjs):
    model = mlp()
    x, _ = data()
    expected = model.predict(x)
    got = tfjs.tfjs_predict(model, x)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=ATOL, rtol=0)


@pytest.mark.parametrize("optimizer", [{"type": "sgd", "learning_rate": 0.1}, {"type": "adam", "learning_rate": 0.01}])
def test_two_training_steps_equal_tfjs(tfjs, optimizer):
    model = mlp()
    x, y = data()
    batches = [(x[:32], y[:32]), (x[32:], y[32:])]
    peer = tfjs.tfjs_train_steps(model, optimizer, "categorical_crossentropy", batches, metrics=["accuracy"],
                                 predict_after=[x])
    model.compile(optimizer=optimizer, loss="categorical_crossentropy", metrics=["accuracy"])
    from trainctl.train.loop import Trainer

    trainer = Trainer(model)
    ours = [trainer.train_batch(xb, yb, None) for xb, yb in batches]
    np.testing.assert_allclose(np.array(peer.losses), np.array(ours), atol=ATOL, rtol=0)
    for name, value in model.get_weights().items():
        np.testing.assert_allclose(peer.weights[name], value, atol=ATOL, rtol=0, err_msg=name)
    np.testing.assert_allclose(peer.predictions_after[0], model.predict(x), atol=ATOL, rtol=0)


def test_tfjs_summary_rows_equal_ours(tfjs):
    model = mlp()
    peer = tfjs.tfjs_summary(model)
    ours = [(r.name, r.class_name, r.output_shape, r.n_params) for r in model.summary_rows()]
    assert peer.summary_rows == ours
    totals = model.param_totals()
    assert peer.trainable_counts == (totals.trainable, totals.non_trainable)
    assert any(line.startswith("dense_Dense1 (Dense)") for line in peer.summary_lines)
