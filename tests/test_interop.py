"""Export and import without a peer runtime: every layer type exports to each format or is
refused with one line naming the layer and the format; TF.js and Keras files read back
into the same model; `trainctl export` / `trainctl import` / run-directory commands on
model files through the CLI; one located error each for damaged files. (The checks in
the real runtimes are in tests/test_interop_peers.py.)"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from tests.interop_models import ALL_LAYER_MODELS, LAYER_MODELS, refused, sample_data
from trainctl.cli import app
from trainctl.nn.layers import LAYERS
from trainctl.nn.model import Sequential
from trainctl.runs.formats import ExportRefused, ImportFailed
from trainctl.runs.formats.tfjs import TrainingSpec, read_tfjs, write_tfjs
from tests.fixtures import teacher_config

TRAINING = TrainingSpec({"type": "adam", "learning_rate": 0.01}, "categorical_crossentropy", ["accuracy"])

SMALL = teacher_config(n_features=6, n_samples=200, layers=("{type: dropout, rate: 0.2}",),
                       data=("preprocessing: [{type: rescale, scale: 0.5, offset: 0.25}]",), fit="{epochs: 2, batch_size: 32}")


def cli(*args):
    return CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "200", "TERM": "dumb"})


def test_every_layer_type_has_an_interop_model():
    assert set(LAYERS.names()) <= set(ALL_LAYER_MODELS)
    assert set(LAYERS.names()) <= set(LAYER_MODELS)


@pytest.mark.parametrize("layer_type", sorted(LAYER_MODELS))
def test_tfjs_and_keras_files_read_back_to_the_same_model(tmp_path, layer_type):
    from trainctl.runs.formats.keras import read_keras, write_keras

    layers, _ = LAYER_MODELS[layer_type]
    model = Sequential(layers, seed=3)
    x, _ = sample_data(model)
    for fmt, write, read in (("tfjs", lambda m, p: write_tfjs(m, p, TRAINING), read_tfjs),
                             ("keras", lambda m, p: write_keras(m, p, TRAINING), read_keras)):
        path = tmp_path / (f"m_{fmt}" if fmt == "tfjs" else "m.keras")
        message = refused(layer_type, fmt)
        if message is not None:  # refused: one line naming the layer and the format
            with pytest.raises(ExportRefused) as error:
                write(model, path)
            text = str(error.value)
            assert message in text and f"({fmt} export)" in text and "\n" not in text, text
            assert any(text.startswith(layer.name) for layer in model.layers), text  # names the layer
            continue
        write(model, path)
        back = read(path)
        assert back.model.summary_rows() == model.summary_rows(), fmt
        if fmt == "keras":  # (the TF.js export writes a reshape's -1 as the size it stands for)
            assert [l.get_config() for l in back.model.layers] == [l.get_config() for l in model.layers]
        for name, value in model.get_weights().items():
            np.testing.assert_array_equal(back.model.get_weights()[name], value, err_msg=f"{fmt} {name}")
        np.testing.assert_array_equal(back.model.predict(x), model.predict(x))
        assert back.training.loss == "categorical_crossentropy" and back.training.metrics == ["accuracy"]
        assert back.training.optimizer["type"] == "adam"


@pytest.mark.parametrize("layer_type", sorted(LAYER_MODELS))
def test_onnx_exports_or_refuses_each_layer_type(tmp_path, layer_type):
    pytest.importorskip("onnx")
    from trainctl.runs.formats.onnx import write_onnx

    model = Sequential(LAYER_MODELS[layer_type][0], seed=3)
    message = refused(layer_type, "onnx")
    if message is None:
        assert write_onnx(model, tmp_path / "m.onnx").stat().st_size > 0
        return
    with pytest.raises(ExportRefused) as error:
        write_onnx(model, tmp_path / "m.onnx")
    text = str(error.value)
    assert message in text and any(text.startswith(layer.name) for layer in model.layers), text


def test_refusals_name_the_layer_and_the_format(tmp_path):
    from trainctl.runs.formats.keras import write_keras

    model = Sequential([{"type": "dense", "units": 2, "activation": "hard_sigmoid", "input_shape": [3]}])
    with pytest.raises(ExportRefused, match=r"dense_Dense1 \(Dense\)\.activation: .*hard_sigmoid.*\(keras export\)"):
        write_keras(model, tmp_path / "m.keras")
    with pytest.raises(ExportRefused, match=r"clipnorm has no TF.js optimizer equivalent \(tfjs export\)"):
        write_tfjs(model, tmp_path / "t", TrainingSpec({"type": "sgd", "clipnorm": 1.0}, "mse", []))


def test_weights_are_cut_into_4mb_shards(tmp_path):
    model = Sequential([{"type": "dense", "units": 1400, "input_shape": [784]}])  # 4.4 MB of float32
    path = write_tfjs(model, tmp_path / "big")
    manifest = json.loads(path.read_text())["weightsManifest"]
    assert manifest[0]["paths"] == ["group1-shard1of2.bin", "group1-shard2of2.bin"]
    sizes = [(tmp_path / "big" / name).stat().st_size for name in manifest[0]["paths"]]
    assert sizes[0] == 4 * 1024 * 1024 and sum(sizes) == (784 * 1400 + 1400) * 4
    back = read_tfjs(path).model
    np.testing.assert_array_equal(back.get_weights()["dense_Dense1/kernel"], model.get_weights()["dense_Dense1/kernel"])


# -- through the CLI --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("interop")
    config = root / "small.yaml"
    config.write_text(SMALL)
    result = cli("train", config, "--out", root / "run", "--quiet")
    assert result.exit_code == 0, result.output
    x = np.random.default_rng(5).standard_normal((7, 6)).astype(np.float32)
    np.save(root / "x.npy", x)
    return root


def _predict(target, x_file, out):
    result = cli("predict", target, "--input", x_file, "--output", out)
    assert result.exit_code == 0, result.output
    return np.load(out)


def test_export_infers_the_format_and_the_files_work_as_runs(trained_run):
    root = trained_run
    expected = _predict(root / "run", root / "x.npy", root / "expected.npy")
    for out in ("tfjs_model", "model.keras", "model.onnx"):
        result = cli("export", root / "run", "--out", root / out)
        assert result.exit_code == 0, result.output
        assert "rescale" in result.output  # the note says what happens to the preprocessing
    assert (root / "tfjs_model" / "model.json").is_file() and (root / "tfjs_model" / "group1-shard1of1.bin").is_file()
    # TF.js and Keras files are accepted where a run directory is; they do not hold the
    # run's preprocessing, so their predictions are those of the rescaled inputs.
    x = np.load(root / "x.npy")
    np.save(root / "x_pre.npy", x * np.float32(0.5) + np.float32(0.25))
    for target in (root / "tfjs_model" / "model.json", root / "tfjs_model", root / "model.keras"):
        got = _predict(target, root / "x_pre.npy", root / "got.npy")
        np.testing.assert_allclose(got, expected, atol=1e-6, rtol=0)
        summary = cli("summary", target)
        assert summary.exit_code == 0 and "dense_Dense1 (Dense)" in summary.output and "dropout_Dropout1" in summary.output


def test_import_writes_a_run_that_trains_as_written(trained_run):
    root = trained_run
    cli("export", root / "run", "--out", root / "exp_tfjs")
    for name, source in (("imp_tfjs", root / "exp_tfjs" / "model.json"), ("imp_keras", root / "model_imp.keras")):
        if source.suffix == ".keras":
            assert cli("export", root / "run", "--format", "keras", "--out", source).exit_code == 0
        result = cli("import", source, "--out", root / name)
        assert result.exit_code == 0, result.output
        np.testing.assert_array_equal(_predict(root / name, root / "x.npy", root / f"{name}.npy"),
                                      _predict(source, root / "x.npy", root / f"{name}_src.npy"))
        trained = cli("train", root / name / "config.yaml", "--init-from", root / name, "--out", root / f"{name}_more",
                      "--quiet")
        assert trained.exit_code == 0, trained.output
        also = cli("train", root / name / "config.yaml", "--init-from", source, "--out", root / f"{name}_more2", "--quiet")
        assert also.exit_code == 0, also.output
        from safetensors.numpy import load_file

        a = load_file(root / f"{name}_more" / "weights.safetensors")
        b = load_file(root / f"{name}_more2" / "weights.safetensors")
        assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_export_without_a_known_extension_asks_for_the_format(trained_run):
    result = cli("export", trained_run / "run", "--out", trained_run / "model.bin")
    assert result.exit_code == 1
    assert "cannot tell the format from '.bin'; pass --format tfjs|keras|onnx" in result.output


def test_evaluate_on_a_model_file_needs_data(trained_run):
    cli("export", trained_run / "run", "--out", trained_run / "ev.keras")
    result = cli("evaluate", trained_run / "ev.keras")
    assert result.exit_code == 1 and "a model file has no data of its own; pass --data FILE" in result.output


# -- damaged files: one located line each --------------------------------------------------
def _exported(tmp_path) -> Path:
    model = Sequential(LAYER_MODELS["dense"][0], seed=0)
    return write_tfjs(model, tmp_path / "m", TRAINING)


def _edit(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def test_unknown_layer_class_is_located(tmp_path):
    path = _exported(tmp_path)
    _edit(path, lambda d: d["modelTopology"]["config"]["layers"][1].update(class_name="Conv3DTranspose"))
    with pytest.raises(ImportFailed, match=r"model.json: modelTopology layer 1: unknown layer class 'Conv3DTranspose'"):
        read_tfjs(path)
    result = cli("summary", path)
    assert result.exit_code == 1 and "unknown layer class 'Conv3DTranspose'" in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1


def test_missing_shard_is_located(tmp_path):
    path = _exported(tmp_path)
    (path.parent / "group1-shard1of1.bin").unlink()
    with pytest.raises(ImportFailed, match=r"group1-shard1of1.bin: weight shard missing \(listed in .*model.json "
                                           r"weightsManifest group 1\)"):
        read_tfjs(path)


def test_truncated_shard_is_located(tmp_path):
    path = _exported(tmp_path)
    shard = path.parent / "group1-shard1of1.bin"
    shard.write_bytes(shard.read_bytes()[:-10])
    with pytest.raises(ImportFailed, match=r"group1-shard1of1.bin: weight shards truncated: group 1 holds 322 bytes, "
                                           r"weight 'dense_Dense2/bias' needs bytes 320..332"):
        read_tfjs(path)


def test_shape_mismatch_is_located(tmp_path):
    path = _exported(tmp_path)
    _edit(path, lambda d: d["weightsManifest"][0]["weights"][0].update(shape=[8, 6]))
    with pytest.raises(Exception, match=r"model.json: dense_Dense1/kernel has shape \[8, 6\], the model expects \[6, 8\]"):
        read_tfjs(path)


def test_unsupported_option_is_located(tmp_path):
    path = _exported(tmp_path)
    _edit(path, lambda d: d["modelTopology"]["config"]["layers"][0]["config"].update(kernel_constraint={
        "class_name": "MaxNorm", "config": {"max_value": 2}}))
    with pytest.raises(ImportFailed, match=r"layer 0 \(Dense\): option kernel_constraint=.* is not supported by trainctl"):
        read_tfjs(path)
