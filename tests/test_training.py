"""The fit/evaluate/predict loop: TF.js logging semantics, splits, shuffling, weights,
reproducibility, and the "basic training loops" guide checked against plain numpy."""

from __future__ import annotations

import numpy as np
import pytest

from trainctl.train.callbacks import Callback
from trainctl.errors import DataError, TrainctlError
from trainctl.nn.model import Sequential


def teacher_task(n=2000, features=20, classes=4, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, features)).astype(np.float32)
    hidden = np.tanh(x @ rng.standard_normal((features, 16)).astype(np.float32))
    labels = np.argmax(hidden @ rng.standard_normal((16, classes)).astype(np.float32), axis=1)
    return x, np.eye(classes, dtype=np.float32)[labels], labels


def mlp(features=20, classes=4, seed=0, dtype=np.float32, **compile_args):
    model = Sequential([{"type": "dense", "units": 32, "activation": "relu", "input_shape": [features]},
                        {"type": "dense", "units": classes, "activation": "softmax"}], seed=seed, dtype=dtype)
    model.compile(**{"optimizer": {"type": "adam", "learning_rate": 0.01},
                     "loss": "categorical_crossentropy", "metrics": ["accuracy"], **compile_args})
    return model


def test_learns_a_learnable_task_far_above_chance():
    x, y, _ = teacher_task()
    model = mlp()
    history = model.fit(x, y, epochs=10, batch_size=32, validation_split=0.2)
    assert history.history["accuracy"][-1] > 0.75
    assert history.history["val_accuracy"][-1] > 0.65  # chance is 0.25
    assert history.history["loss"][-1] < history.history["loss"][0] / 1.5


def linear_data():
    rng = np.random.default_rng(0)
    x = np.linspace(-2, 2, 201, dtype=np.float32)[:, None]
    y = (3 * x + 2 + rng.standard_normal((201, 1)).astype(np.float32)).astype(np.float32)
    return x, y


def test_basic_training_loop_guide_matches_plain_numpy():
    x, y = linear_data()
    model = Sequential([{"type": "dense", "units": 1, "input_shape": [1],
                         "kernel_initializer": {"type": "constant", "value": 5.0},
                         "bias_initializer": {"type": "constant", "value": 0.0}}])
    model.compile(optimizer={"type": "sgd", "learning_rate": 0.1}, loss="mean_squared_error")
    history = model.fit(x, y, epochs=10, batch_size=201, shuffle=False)

    w, b = 5.0, 0.0
    losses = []
    xs, ys = x[:, 0].astype(np.float64), y[:, 0].astype(np.float64)
    for _ in range(10):
        error = w * xs + b - ys
        losses.append(np.mean(error ** 2))
        w, b = w - 0.1 * np.mean(2 * error * xs), b - 0.1 * np.mean(2 * error)
    kernel, bias = model.layers[0].kernel.value[0, 0], model.layers[0].bias.value[0]
    assert kernel == pytest.approx(w, abs=1e-5) and bias == pytest.approx(b, abs=1e-5)
    np.testing.assert_allclose(history.history["loss"], losses, rtol=1e-5)
    assert 2.9 < kernel < 3.3 and 1.5 < bias < 2.0  # the guide's W≈3.1, b≈1.8 (noise-dependent)


class Recorder(Callback):
    def __init__(self):
        super().__init__()
        self.batch_logs, self.epoch_logs, self.weights_before = [], [], []

    def on_batch_begin(self, batch, logs=None):
        self.weights_before.append({k: v.copy() for k, v in self.model.get_weights().items()})

    def on_batch_end(self, batch, logs=None):
        self.batch_logs.append(dict(logs))

    def on_epoch_end(self, epoch, logs=None):
        self.epoch_logs.append(dict(logs))


def test_batch_values_before_update_and_epoch_is_size_weighted_mean():
    x, y, _ = teacher_task(n=100)
    model = mlp()
    recorder = Recorder()
    model.fit(x, y, epochs=1, batch_size=32, shuffle=False, callbacks=[recorder])
    sizes = [log["size"] for log in recorder.batch_logs]
    assert sizes == [32, 32, 32, 4]  # the last partial batch is used
    # batch 2's logged loss is the loss of the weights *before* batch 2's update
    probe = mlp()
    probe.set_weights(recorder.weights_before[2])
    start = 64
    expected = probe.evaluate(x[start:start + 32], y[start:start + 32], batch_size=32)
    assert recorder.batch_logs[2]["loss"] == pytest.approx(expected["loss"], rel=1e-5)
    assert recorder.batch_logs[2]["accuracy"] == pytest.approx(expected["accuracy"])
    mean = sum(l["loss"] * l["size"] for l in recorder.batch_logs) / 100
    assert recorder.epoch_logs[0]["loss"] == pytest.approx(mean, rel=1e-12)


def test_validation_split_takes_last_fraction_before_shuffling_and_after_last_update():
    x, y, _ = teacher_task(n=200)
    model = mlp()
    recorder = Recorder()
    model.fit(x, y, epochs=2, batch_size=16, validation_split=0.25, callbacks=[recorder])
    assert sum(log["size"] for log in recorder.batch_logs) == 2 * 150
    expected = model.evaluate(x[150:], y[150:], batch_size=16)
    assert recorder.epoch_logs[-1]["val_loss"] == pytest.approx(expected["loss"], rel=1e-6)
    assert recorder.epoch_logs[-1]["val_accuracy"] == pytest.approx(expected["accuracy"])


def test_shuffle_is_seeded_differs_per_epoch_and_runs_are_bit_identical():
    x, y, _ = teacher_task(n=300)

    def train(seed):
        model = mlp(seed=seed)
        model.fit(x, y, epochs=3, batch_size=32, shuffle=True)
        return model.get_weights()

    a, b, c = train(0), train(0), train(1)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not all(np.array_equal(a[k], c[k]) for k in a)
    from trainctl.data.source import ArraySource

    source = ArraySource(x, y, shuffle=True, seed=0)
    assert not np.array_equal(source.order(0), source.order(1))
    assert np.array_equal(np.sort(source.order(0)), np.arange(300))


def test_class_weight_scales_each_sample_loss():
    x, y, labels = teacher_task(n=64)
    weights = {0: 2.0, 1: 0.5, 2: 1.0, 3: 3.0}
    model = mlp()
    recorder = Recorder()
    initial = {k: v.copy() for k, v in model.get_weights().items()}
    model.fit(x, y, epochs=1, batch_size=64, class_weight=weights, callbacks=[recorder])
    probs = mlp()
    probs.set_weights(initial)
    p = np.clip(probs.predict(x), 1e-7, 1 - 1e-7)
    per_sample = -np.sum(y * np.log(p), axis=1)
    w = np.array([weights[int(c)] for c in labels])
    assert recorder.batch_logs[0]["loss"] == pytest.approx(np.mean(per_sample * w), rel=1e-5)


def test_sample_weight_zero_samples_do_not_move_weights():
    x, y, _ = teacher_task(n=32)
    model = mlp(optimizer={"type": "sgd", "learning_rate": 0.1})
    before = {k: v.copy() for k, v in model.get_weights().items()}
    model.fit(x, y, epochs=1, batch_size=32, sample_weight=np.zeros(32, np.float32))
    assert all(np.array_equal(before[k], v) for k, v in model.get_weights().items())


def test_initial_epoch_runs_the_remaining_epochs():
    x, y, _ = teacher_task(n=64)
    recorder = Recorder()
    history = mlp().fit(x, y, epochs=5, initial_epoch=3, batch_size=32, callbacks=[recorder])
    assert history.epoch == [3, 4]


def test_early_stop_flag_ends_training():
    class StopAfterTwo(Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                self.model.stop_training = True

    x, y, _ = teacher_task(n=64)
    history = mlp().fit(x, y, epochs=10, batch_size=32, callbacks=[StopAfterTwo()])
    assert history.epoch == [0, 1]


def test_predict_in_batches_equals_numpy_forward():
    x, y, _ = teacher_task(n=77)
    model = mlp()
    model.fit(x, y, epochs=1, batch_size=8)
    w = model.get_weights()
    hidden = np.maximum(x @ w["dense_Dense1/kernel"] + w["dense_Dense1/bias"], 0)
    logits = hidden @ w["dense_Dense2/kernel"] + w["dense_Dense2/bias"]
    expected = np.exp(logits - logits.max(1, keepdims=True))
    expected /= expected.sum(1, keepdims=True)
    np.testing.assert_allclose(model.predict(x, batch_size=10), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("layers,loss,message", [
    ([{"type": "dense", "units": 1, "activation": "sigmoid", "input_shape": [3]}], "categorical_crossentropy",
     "at least 2 units"),
    ([{"type": "dense", "units": 3, "activation": "relu", "input_shape": [3]}], "categorical_crossentropy",
     "expects probabilities"),
    ([{"type": "dense", "units": 1, "input_shape": [3]}], "sparse_categorical_crossentropy", "one unit per class"),
])
def test_loss_must_suit_the_output(layers, loss, message):
    model = Sequential(layers)
    with pytest.raises(TrainctlError, match=message):
        model.compile(optimizer="sgd", loss=loss)


def test_data_checked_against_model_before_training():
    model = mlp()
    x, y, labels = teacher_task(n=10)
    with pytest.raises(DataError, match=r"inputs have shape \[n,5\] but the model expects \[n,20\]"):
        model.fit(x[:, :5], y)
    with pytest.raises(DataError, match="targets look like class labels"):
        model.fit(x, labels[:, None].astype(np.float32))
    sparse = Sequential([{"type": "dense", "units": 4, "activation": "softmax", "input_shape": [20]}])
    sparse.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    with pytest.raises(DataError, match=r"labels must be integers in \[0, 3\]"):
        sparse.fit(x, np.full((10, 1), 4, np.float32))
    sparse.fit(x, labels[:, None].astype(np.float32), epochs=1)  # in range: trains


def test_one_dimensional_targets_for_a_one_unit_output():
    x, y = linear_data()
    model = Sequential([{"type": "dense", "units": 1, "input_shape": [1]}], seed=0)
    model.compile(optimizer={"type": "sgd", "learning_rate": 0.1}, loss="mse")
    flat = model.fit(x, y[:, 0], epochs=3, batch_size=201, shuffle=False).history["loss"]
    again = Sequential([{"type": "dense", "units": 1, "input_shape": [1]}], seed=0)
    again.compile(optimizer={"type": "sgd", "learning_rate": 0.1}, loss="mse")
    assert flat == again.fit(x, y, epochs=3, batch_size=201, shuffle=False).history["loss"]


def test_class_weight_applies_to_a_batch_source_too():
    from trainctl.data.source import ArraySource

    x, y, labels = teacher_task(n=64)
    weights = {0: 2.0, 1: 0.5, 2: 1.0, 3: 3.0}
    from_arrays, from_source = mlp(), mlp()
    a = from_arrays.fit(x, y, epochs=2, batch_size=16, shuffle=False, class_weight=weights)
    b = from_source.fit(epochs=2, batch_size=16, source=ArraySource(x, y), class_weight=weights)
    assert a.history["loss"] == b.history["loss"]
    unweighted = mlp().fit(epochs=2, batch_size=16, source=ArraySource(x, y))
    assert unweighted.history["loss"] != b.history["loss"]
