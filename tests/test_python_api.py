"""The Python API as the README shows it: callbacks as objects, ids or mappings; save/load of
a run directory; fit_dataset over Python generators and stream configs."""

from __future__ import annotations

import numpy as np
import pytest

import trainctl
from trainctl.errors import ConfigValueError, DataError


def data(n=512, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 4)).astype(np.float32)
    labels = (x[:, 0] > 0).astype(int) + (x[:, 1] > 0)
    return x, np.eye(3, dtype=np.float32)[labels], labels


def model(seed=0):
    m = trainctl.Sequential([{"type": "dense", "units": 16, "activation": "relu", "input_shape": [4]},
                             {"type": "dense", "units": 3, "activation": "softmax"}], seed=seed)
    m.compile(optimizer={"type": "adam", "learning_rate": 0.01}, loss="categorical_crossentropy", metrics=["accuracy"])
    return m


def test_callbacks_as_ids_and_mappings_act_like_the_objects():
    from trainctl.train.callbacks import EarlyStopping

    x, y, _ = data()
    y[:, :] = y[::-1]  # unlearnable: validation loss stops improving at once
    by_spec = model().fit(x, y, epochs=30, validation_split=0.25, verbose=0,
                          callbacks=[{"type": "early_stopping", "monitor": "val_loss", "patience": 1}, "terminate_on_nan"])
    by_object = model().fit(x, y, epochs=30, validation_split=0.25, verbose=0,
                            callbacks=[EarlyStopping(monitor="val_loss", patience=1)])
    assert by_spec.history == by_object.history and len(by_spec.epoch) < 30


@pytest.mark.parametrize("spec, message", [
    ({"type": "early_stopping", "patiense": 2}, "callbacks.0.patiense: unknown key 'patiense'; did you mean 'patience'?"),
    ({"type": "early_stoping"}, "callbacks.0.type: unknown callback 'early_stoping'; did you mean 'early_stopping'?"),
    ("csv_logger", "callbacks.0: missing required key 'filename'"),
    (3, "callbacks.0: a callback is a Callback object, an id such as 'early_stopping', or a mapping with 'type'; got 3"),
])
def test_bad_callback_specs_are_located_errors(spec, message):
    x, y, _ = data(32)
    with pytest.raises(ConfigValueError) as caught:
        model().fit(x, y, callbacks=[spec], verbose=0)
    assert str(caught.value) == message


def test_save_writes_a_run_directory_and_load_reads_it_back_compiled(tmp_path):
    x, y, _ = data()
    original = model()
    original.fit(x, y, epochs=2, batch_size=32, verbose=0)
    original.save(tmp_path / "saved")
    assert sorted(p.name for p in (tmp_path / "saved").iterdir()) == [
        "history.csv", "model.json", "optimizer.safetensors", "weights.safetensors"]
    loaded = trainctl.load(tmp_path / "saved")
    np.testing.assert_array_equal(loaded.predict(x), original.predict(x))
    assert loaded.optimizer.get_config() == original.optimizer.get_config()
    assert loaded.optimizer.iterations == original.optimizer.iterations == 32
    # Training on continues exactly as the original would (optimizer slots restored).
    original.fit(x, y, epochs=1, shuffle=False, verbose=0)
    loaded.fit(x, y, epochs=1, shuffle=False, verbose=0)
    np.testing.assert_array_equal(loaded.get_weights()["dense_Dense1/kernel"], original.get_weights()["dense_Dense1/kernel"])
    loaded.save(tmp_path / "saved")  # overwriting a saved model is allowed
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(trainctl.TrainctlError, match="exists and is not a saved model"):
        loaded.save(tmp_path / "other")
    with pytest.raises(trainctl.TrainctlError, match="saved model directory not found"):
        trainctl.load(tmp_path / "nowhere")


def test_load_opens_a_run_written_by_trainctl_train(tmp_path):
    from tests.test_public_api import trainctl_root

    loaded = trainctl.load_config(trainctl_root() / "configs" / "quickstart.yaml",
                                  ["fit.epochs=1", "data.train.n_samples=600"])
    trainctl.train_from_config(loaded, out=tmp_path / "run")
    model_ = trainctl.load(tmp_path / "run")
    assert model_.loss.name == "categorical_crossentropy"
    assert model_.predict(np.zeros((2, 2), np.float32)).shape == (2, 3)


def test_fit_dataset_over_a_generator_function_equals_fit_on_the_same_batches():
    x, y, _ = data()

    def batches():
        for start in range(0, len(x), 64):
            yield x[start:start + 64], y[start:start + 64]

    by_dataset = model()
    history = by_dataset.fit_dataset(batches, epochs=3, verbose=0)
    by_fit = model()
    by_fit.fit(x, y, epochs=3, batch_size=64, shuffle=False, verbose=0)
    np.testing.assert_allclose(history.history["loss"], by_fit.history.history["loss"], rtol=1e-6)
    np.testing.assert_array_equal(by_dataset.predict(x), by_fit.predict(x))


def test_fit_dataset_continues_a_generator_object_across_epochs_and_takes_tfjs_dicts():
    x, y, _ = data()
    seen = []

    def stream():
        for start in range(0, len(x), 32):
            seen.append(start)
            yield {"xs": x[start:start + 32], "ys": y[start:start + 32]}

    history = model().fitDataset(stream(), epochs=2, batches_per_epoch=4, verbose=0)
    assert len(history.epoch) == 2 and seen == [32 * i for i in range(8)]  # no batch dropped between epochs
    with pytest.raises(DataError, match="no batches left for epoch 2; pass a function that returns a new generator"):
        model().fit_dataset(stream(), epochs=2, verbose=0)


def test_fit_dataset_checks_shapes_before_training():
    x, y, _ = data(64)
    with pytest.raises(DataError, match=r"dataset: inputs have shape \[n,3\] but the model expects \[n,4\]"):
        model().fit_dataset(lambda: iter([(x[:, :3], y)]), verbose=0)
    with pytest.raises(DataError, match="batch 1: expected"):
        model().fit_dataset(lambda: iter([x]), verbose=0)


def test_fit_dataset_over_a_stream_config(tmp_path):
    x, _, labels = data()
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", labels.astype(np.int64))
    history = model().fit_dataset({"source": {"npy": "x.npy", "targets": "y.npy"}, "shuffle": 256},
                                  base_dir=tmp_path, epochs=8, batch_size=32, verbose=0,
                                  validation_data=(x[-128:], np.eye(3, dtype=np.float32)[labels[-128:]]))
    assert history.history["val_accuracy"][-1] > 0.8  # 3 quadrant classes: chance 0.33-0.5
    with pytest.raises(ConfigValueError, match="dataset"):
        model().fit_dataset({"source": {"npy": "x.npy"}, "shufle": 3}, base_dir=tmp_path, verbose=0)


def test_summary_prints_the_cli_table(capsys):
    from tests.test_cli import TFJS_MLP, ok
    from trainctl.config import load_config

    config = load_config(TFJS_MLP).config
    built = trainctl.Sequential([layer.to_dict() for layer in config.model.layers], name=config.name, seed=config.seed)
    built.compile(optimizer=config.optimizer.to_dict(), loss=config.loss, metrics=["acc"])
    lines = []
    built.summary(print_fn=lines.append)
    assert "\n".join(lines) + "\n" == ok(["summary", TFJS_MLP]).stdout
    assert any(line.startswith("Total params: 25450") for line in lines)  # the TF.js guide's count
    built.summary()
    assert capsys.readouterr().out.splitlines() == lines


@pytest.mark.parametrize("verbose, expected", [(0, 0), (2, 3), (1, 3), (None, 0)])
def test_fit_verbose_follows_keras(capsys, verbose, expected):
    x, y, _ = data(128)
    model().fit(x, y, epochs=3, verbose=verbose, validation_split=0.25)
    lines = capsys.readouterr().out.splitlines()  # pytest's stdout is not a terminal: 1 is one line per epoch
    assert len(lines) == expected
    if expected:
        assert lines[0].startswith("epoch 1/3  loss ") and " val_accuracy " in lines[0]
    with pytest.raises(trainctl.TrainctlError, match="verbose must be 0"):
        model().fit(x, y, verbose=3)


def test_verbose_default_is_on_in_a_terminal_only():
    from trainctl.cli.verbose import display_mode

    assert display_mode(None, is_terminal=True) == "auto" and display_mode(None, is_terminal=False) == "quiet"
    assert [display_mode(v) for v in (0, 1, 2)] == ["quiet", "auto", "plain"]
