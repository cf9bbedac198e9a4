"""Exports and imports checked in the real runtimes, one model per layer type
(tests/interop_models.py): TF.js 4.22 in Node (tf.loadLayersModel → predictions, summary
rows, two training steps compiled from the exported trainingConfig; and the reverse: a
model built and trained in TF.js, imported here, predicts the same and continues training
the same), Keras 3 with the torch backend (load_model of the export; a Keras-built .keras
imported), onnxruntime (predictions of the ONNX export, with the run's preprocessing
folded in). Each peer's tests skip cleanly when it is absent."""

from __future__ import annotations

import os

import numpy as np
import pytest

from tests.interop_models import LAYER_MODELS, keras_layers, refused, sample_data, tfjs_layers
from trainctl.nn.model import Sequential
from trainctl.runs.formats.tfjs import TrainingSpec

ATOL = 1e-5
ADAM = {"type": "adam", "learning_rate": 0.01}
TRAINING = TrainingSpec(ADAM, "categorical_crossentropy", ["accuracy"])


def _trainctl_steps(model, batches, optimizer=ADAM):
    from trainctl.train.loop import Trainer

    model.compile(optimizer=optimizer, loss="categorical_crossentropy", metrics=["accuracy"])
    trainer = Trainer(model)
    return [trainer.train_batch(x, y, None) for x, y in batches]


# -- TF.js ------------------------------------------------------------------------------------
SGD_JS = {"optimizer": {"factory": "sgd", "args": [0.1]}, "loss": "categoricalCrossentropy", "metrics": ["accuracy"]}


@pytest.fixture(scope="module")
def tfjs_layer_runs(tmp_path_factory):
    """Every layer type's model through TF.js in one node process: the export (predict,
    two trainOnBatch steps compiled from its trainingConfig) and the reverse (built with
    tf.layers, one SGD step, saved with its trainingConfig, then two more steps)."""
    from tests.peers import tfjs

    if not tfjs.tfjs_available():
        pytest.skip("TF.js peer absent")
    root = tmp_path_factory.mktemp("tfjs_layers")
    cases, requests = {}, []
    for layer_type in sorted(LAYER_MODELS):
        if refused(layer_type, "tfjs"):  # (tests/test_interop.py checks the refusal)
            continue
        layers, trains = LAYER_MODELS[layer_type]
        model = Sequential(layers, seed=1)
        x, y = sample_data(model, n=24)
        batches = [(x[:12], y[:12]), (x[12:], y[12:])] if trains else []
        folder = root / f"export_{layer_type}"
        tfjs.export_model(model, folder, optimizer=ADAM, loss="categorical_crossentropy", metrics=["accuracy"])
        requests.append(tfjs.model_dir_request(folder, predict=[x], train=batches, predict_after=[x] if batches else []))
        more = [(x[12:], y[12:]), (x[:12], y[:12])] if trains else []
        saved = root / f"built_{layer_type}"
        requests.append(tfjs.build_request(tfjs_layers(layers), saved, compile=SGD_JS, batches=batches[:1], predict=[x],
                                           include_optimizer=True, train_more=more))
        cases[layer_type] = (model, x, batches, saved, more)
    answers = tfjs.run_batch(requests)
    return {layer_type: (*cases[layer_type], answers[2 * i], answers[2 * i + 1])
            for i, layer_type in enumerate(cases)}


TFJS_TYPES = [t for t in sorted(LAYER_MODELS) if not refused(t, "tfjs")]
KERAS_TYPES = [t for t in sorted(LAYER_MODELS) if not refused(t, "keras")]


@pytest.mark.tfjs
@pytest.mark.parametrize("layer_type", TFJS_TYPES)
def test_tfjs_loads_the_export_predicts_summarises_and_trains_the_same(tfjs, tfjs_layer_runs, layer_type):
    model, x, batches, _, _, raw, _ = tfjs_layer_runs[layer_type]
    peer = tfjs.result_of(raw)
    np.testing.assert_allclose(peer.predictions[0], model.predict(x), atol=ATOL, rtol=0)
    assert peer.summary_rows == [(r.name, r.class_name, r.output_shape, r.n_params) for r in model.summary_rows()]
    for row in model.summary_rows():  # and as TF.js's model.summary() prints them
        shape = "[" + ",".join("null" if d is None else str(d) for d in row.output_shape) + "]"
        line = next(l for l in peer.summary_lines if l.startswith(f"{row.name} ({row.class_name})"))
        assert line.split()[-2:] == [shape, str(row.n_params)], line
    totals = model.param_totals()
    assert peer.trainable_counts == (totals.trainable, totals.non_trainable)
    assert peer.training_config["optimizer_config"]["class_name"] == "Adam"
    if not batches:
        return
    ours = _trainctl_steps(model, batches)
    np.testing.assert_allclose(np.array(peer.losses), np.array(ours), atol=ATOL, rtol=0)
    for name, value in model.get_weights().items():
        np.testing.assert_allclose(peer.weights[name], value, atol=ATOL, rtol=0, err_msg=name)
    np.testing.assert_allclose(peer.predictions_after[0], model.predict(x), atol=ATOL, rtol=0)


@pytest.mark.tfjs
@pytest.mark.parametrize("layer_type", TFJS_TYPES)
def test_tfjs_built_model_of_each_layer_type_imports_and_continues_training_the_same(tfjs, tfjs_layer_runs,
                                                                                     layer_type):
    from trainctl.runs.formats.tfjs import read_tfjs
    from trainctl.train.loop import Trainer

    _, x, _, saved, more, _, raw = tfjs_layer_runs[layer_type]
    peer = tfjs.result_of(raw)
    imported = read_tfjs(saved / "model.json")
    model = imported.model
    assert [(r.name, r.class_name, r.output_shape, r.n_params) for r in model.summary_rows()] == peer.summary_rows
    np.testing.assert_allclose(model.predict(x), peer.predictions_after[0], atol=ATOL, rtol=0)
    if not more:
        return
    assert imported.training.optimizer == {"type": "sgd", "learning_rate": 0.1}
    model.compile(optimizer=imported.training.optimizer, loss=imported.training.loss, metrics=imported.training.metrics)
    trainer = Trainer(model)
    ours = [trainer.train_batch(xb, yb, None) for xb, yb in more]
    np.testing.assert_allclose(np.array(ours), np.array(peer.losses_more), atol=ATOL, rtol=0)
    for name, value in model.get_weights().items():
        np.testing.assert_allclose(value, peer.weights_more[name], atol=ATOL, rtol=0, err_msg=name)


@pytest.mark.tfjs
def test_tfjs_fit_from_the_exported_run_equals_trainctl_fit(tfjs, tmp_path, teacher_yaml):
    """A run trained by the CLI, exported by the CLI; TF.js compiles from the trainingConfig
    and fits two batches (shuffle off); trainctl fits the same two from the same weights."""
    from typer.testing import CliRunner

    from trainctl.cli import app
    from trainctl.runs.inference import open_run

    config = teacher_yaml(name="c", seed=None, n_features=6, optimizer="{type: sgd, learning_rate: 0.2}",
                          metrics="[accuracy, mean_squared_error, recall]")
    runner = CliRunner()
    assert runner.invoke(app, ["train", str(config), "--out", str(tmp_path / "run"), "-q"]).exit_code == 0
    result = runner.invoke(app, ["export", str(tmp_path / "run"), "--out", str(tmp_path / "tfjs")])
    assert result.exit_code == 0, result.output
    assert "leaves out metrics TF.js has no string id for: recall" in result.output
    x, y = sample_data((6,), n=32, seed=4)
    peer = tfjs.run_model_dir(tmp_path / "tfjs", fit={"x": x, "y": y, "batchSize": 16, "epochs": 1}, predict_after=[x])
    model = open_run(tmp_path / "run").model  # compiled from the run's config, fresh optimizer
    history = model.fit(x, y, epochs=1, batch_size=16, shuffle=False)
    for name, value in model.get_weights().items():
        np.testing.assert_allclose(peer.weights[name], value, atol=ATOL, rtol=0, err_msg=name)
    np.testing.assert_allclose(peer.fit_history["loss"], history.history["loss"], atol=ATOL, rtol=0)
    np.testing.assert_allclose(peer.fit_history["mse"], history.history["mean_squared_error"], atol=ATOL, rtol=0)
    np.testing.assert_allclose(peer.fit_history["acc"], history.history["accuracy"], atol=ATOL, rtol=0)


@pytest.mark.tfjs
def test_tfjs_continues_a_run_exported_with_its_optimizer_state(tfjs, tmp_path, teacher_yaml):
    from typer.testing import CliRunner

    from trainctl.cli import app
    from trainctl.runs.inference import open_run
    from trainctl.train.loop import Trainer

    config = teacher_yaml(name="c", seed=None, n_features=6, activation="tanh", metrics="",
                          optimizer="{type: rmsprop, learning_rate: 0.01, momentum: 0.5}", fit="{epochs: 2, batch_size: 16}")
    runner = CliRunner()
    assert runner.invoke(app, ["train", str(config), "--out", str(tmp_path / "run"), "-q"]).exit_code == 0
    result = runner.invoke(app, ["export", str(tmp_path / "run"), "--out", str(tmp_path / "tfjs"), "--include-optimizer"])
    assert result.exit_code == 0, result.output
    x, y = sample_data((6,), n=32, seed=5)
    batches = [(x[:16], y[:16]), (x[16:], y[16:])]
    peer = tfjs.run_model_dir(tmp_path / "tfjs", train=batches)
    run = open_run(tmp_path / "run")
    run.model.optimizer.load_state(run.run_dir.read_optimizer()[0])  # where the run stopped: 8 steps in
    trainer = Trainer(run.model)
    ours = [trainer.train_batch(xb, yb, None) for xb, yb in batches]
    np.testing.assert_allclose(np.array(peer.losses), np.array(ours), atol=ATOL, rtol=0)
    for name, value in run.model.get_weights().items():
        np.testing.assert_allclose(peer.weights[name], value, atol=ATOL, rtol=0, err_msg=name)


@pytest.mark.tfjs
def test_a_tfjs_trained_model_imports_predicts_and_continues_training_the_same(tfjs, tmp_path):
    from trainctl.runs.formats.tfjs import read_tfjs
    from trainctl.runs.interop import import_to_run
    from trainctl.runs.inference import open_run

    js_layers = [{"type": "dense", "config": {"units": 8, "activation": "relu", "inputShape": [6]}},
                 {"type": "dropout", "config": {"rate": 0.25}},
                 {"type": "dense", "config": {"units": 8}},
                 {"type": "activation", "config": {"activation": "tanh"}},
                 {"type": "reshape", "config": {"targetShape": [2, 4]}},
                 {"type": "flatten", "config": {}},
                 {"type": "dense", "config": {"units": 3, "activation": "softmax"}}]
    x, y = sample_data((6,), n=40, seed=2)
    first, more = [(x[:10], y[:10]), (x[10:20], y[10:20])], [(x[20:30], y[20:30]), (x[30:], y[30:])]
    # dropout in TF.js's own training steps is TF.js's; continued training here is compared
    # with TF.js's on the layers that are deterministic, so that layer is rate 0 from here on.
    js_layers[1]["config"]["rate"] = 0.0
    peer = tfjs.tfjs_build_and_train(
        js_layers, tmp_path / "saved",
        compile={"optimizer": {"factory": "adam", "args": [0.01]},
                 "loss": "categoricalCrossentropy", "metrics": ["accuracy"]},
        batches=first, predict=[x], include_optimizer=True, train_more=more)
    imported = read_tfjs(tmp_path / "saved" / "model.json")
    model = imported.model
    assert [l.name for l in model.layers][:2] == ["dense_Dense1", "dropout_Dropout1"]
    np.testing.assert_allclose(model.predict(x), peer.predictions_after[0], atol=ATOL, rtol=0)
    assert imported.training.optimizer["type"] == "adam" and imported.optimizer_state["iterations"][0] == 2
    model.compile(optimizer=imported.training.optimizer, loss=imported.training.loss, metrics=imported.training.metrics)
    model.optimizer.load_state(imported.optimizer_state)
    from trainctl.train.loop import Trainer

    trainer = Trainer(model)
    ours = [trainer.train_batch(xb, yb, None) for xb, yb in more]
    np.testing.assert_allclose(np.array(ours), np.array(peer.losses_more), atol=ATOL, rtol=0)
    for name, value in model.get_weights().items():
        np.testing.assert_allclose(value, peer.weights_more[name], atol=ATOL, rtol=0, err_msg=name)
    # the same file through `trainctl import`: the run directory predicts the same
    run_path = import_to_run(tmp_path / "saved" / "model.json", tmp_path / "run")
    np.testing.assert_allclose(open_run(run_path).model.predict(x), peer.predictions_after[0], atol=ATOL, rtol=0)


# -- Keras 3 (torch backend) ---------------------------------------------------------------
# Keras's torch backend converts tensors with np.array(x) (its own deprecation, not ours);
# loading a compiled export, Keras notes it builds a fresh optimizer.
def keras_peer(test):
    test = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")(test)
    test = pytest.mark.filterwarnings("ignore:Skipping variable loading for optimizer")(test)
    return pytest.mark.keras(test)


def _keras():
    os.environ.setdefault("KERAS_BACKEND", "torch")
    try:
        import keras
    except Exception as error:  # ImportError, or a backend that cannot start
        pytest.skip(f"Keras 3 peer absent: {error}")
    return keras


@keras_peer
@pytest.mark.parametrize("layer_type", KERAS_TYPES)
def test_keras_load_model_of_the_export_predicts_the_same(tmp_path, layer_type):
    keras = _keras()
    from trainctl.runs.formats.keras import write_keras

    model = Sequential(LAYER_MODELS[layer_type][0], seed=2)
    x, _ = sample_data(model)
    write_keras(model, tmp_path / "m.keras", TRAINING)
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(np.asarray(loaded.predict(x, verbose=0)), model.predict(x), atol=ATOL, rtol=0)
    assert [layer.name for layer in loaded.layers] == [layer.name for layer in model.layers]
    assert loaded.loss == "categorical_crossentropy"


@keras_peer
@pytest.mark.parametrize("layer_type", KERAS_TYPES)
def test_a_keras_built_model_of_each_layer_type_imports_and_predicts_the_same(tmp_path, layer_type):
    keras = _keras()
    from trainctl.runs.interop import read_foreign

    layers = LAYER_MODELS[layer_type][0]
    built = keras.Sequential(keras_layers(keras, layers))
    x, _ = sample_data(layers, seed=10)
    built.save(tmp_path / "built.keras")
    imported = read_foreign(tmp_path / "built.keras")
    np.testing.assert_allclose(imported.model.predict(x), np.asarray(built.predict(x, verbose=0)), atol=ATOL, rtol=0)
    assert [l.class_name for l in imported.model.layers] == [type(l).__name__ for l in built.layers]


@keras_peer
def test_a_keras_built_model_imports_and_predicts_the_same(tmp_path):
    keras = _keras()
    from trainctl.runs.interop import import_to_run, read_foreign
    from trainctl.runs.inference import open_run

    built = keras.Sequential([
        keras.Input(shape=(6,)),
        keras.layers.Dense(8, activation="relu", kernel_regularizer=keras.regularizers.L2(0.01)),
        keras.layers.Dropout(0.3),
        keras.layers.Dense(8),
        keras.layers.Activation("tanh"),
        keras.layers.Reshape((2, 4)),
        keras.layers.Flatten(),
        keras.layers.Dense(3, activation="softmax"),
    ])
    built.compile(optimizer=keras.optimizers.Adam(0.01), loss="categorical_crossentropy", metrics=["accuracy"])
    x, y = sample_data((6,), n=32, seed=6)
    built.fit(x, y, epochs=1, batch_size=16, verbose=0)
    built.save(tmp_path / "built.keras")
    expected = np.asarray(built.predict(x, verbose=0))
    imported = read_foreign(tmp_path / "built.keras")
    np.testing.assert_allclose(imported.model.predict(x), expected, atol=ATOL, rtol=0)
    assert imported.model.layers[0].params.kernel_regularizer == {"type": "l1l2", "l1": 0.0, "l2": 0.01}
    assert imported.training.optimizer["type"] == "adam" and imported.training.loss == "categorical_crossentropy"
    run_path = import_to_run(tmp_path / "built.keras", tmp_path / "run")
    np.testing.assert_allclose(open_run(run_path).model.predict(x), expected, atol=ATOL, rtol=0)


# -- onnxruntime ------------------------------------------------------------------------------
@pytest.mark.onnx
@pytest.mark.parametrize("layer_type", [t for t in sorted(LAYER_MODELS) if not refused(t, "onnx")])
def test_onnxruntime_predictions_of_the_export_are_the_same(tmp_path, layer_type):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from trainctl.runs.formats.onnx import write_onnx

    model = Sequential(LAYER_MODELS[layer_type][0], seed=3)
    x, _ = sample_data(model, n=9)
    session = ort.InferenceSession(str(write_onnx(model, tmp_path / "m.onnx")))
    np.testing.assert_allclose(session.run(None, {"input": x})[0], model.predict(x), atol=ATOL, rtol=0)
    np.testing.assert_allclose(session.run(None, {"input": x[:1]})[0], model.predict(x[:1]), atol=ATOL, rtol=0)


@pytest.mark.onnx
def test_onnx_export_of_a_run_folds_its_preprocessing_in(tmp_path, teacher_yaml):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from typer.testing import CliRunner

    from trainctl.cli import app

    config = teacher_yaml(name="c", seed=None, n_features=6, activation="gelu", optimizer="adam", metrics="",
                          data=("preprocessing: [{type: standardize}, {type: min_max, feature_range: [-1, 1]}, "
                                "{type: rescale, scale: 2.0, offset: 0.5}]",))
    runner = CliRunner()
    assert runner.invoke(app, ["train", str(config), "--out", str(tmp_path / "run"), "-q"]).exit_code == 0
    result = runner.invoke(app, ["export", str(tmp_path / "run"), "--out", str(tmp_path / "m.onnx")])
    assert result.exit_code == 0 and "preprocessing folded in (standardize, min_max, rescale)" in result.output
    x = (np.random.default_rng(8).standard_normal((11, 6)) * 3 + 1).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    assert runner.invoke(app, ["predict", str(tmp_path / "run"), "-i", str(tmp_path / "x.npy"),
                               "-o", str(tmp_path / "p.npy")]).exit_code == 0
    session = ort.InferenceSession(str(tmp_path / "m.onnx"))
    np.testing.assert_allclose(session.run(None, {"input": x})[0], np.load(tmp_path / "p.npy"), atol=ATOL, rtol=0)
