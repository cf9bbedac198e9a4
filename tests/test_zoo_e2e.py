"""The zoo's layers end to end through the CLI: the shipped batch-norm and embedding configs
learn their tasks (far above chance), non-trainable weights are counted, saved and restored,
an out-of-range embedding index is a one-line error naming the data row, and images come
as [rows, cols, 1] through the reshape step."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.test_cli import fails, ok, table_rows
from trainctl.runs.tensors import load_weights

ROOT = Path(__file__).resolve().parent.parent


def final_metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


@pytest.fixture(scope="module")
def batchnorm_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bn") / "run"
    ok(["train", ROOT / "configs" / "digits_batchnorm.yaml", "--out", out, "--quiet", "--set", "fit.epochs=8"])
    return out


def test_batchnorm_config_learns_digits(batchnorm_run):
    metrics = final_metrics(batchnorm_run)
    assert metrics["val_accuracy"] > 0.94, metrics  # chance is 0.1


def test_batchnorm_moving_statistics_are_non_trainable_saved_and_restored(batchnorm_run):
    summary = ok(["summary", ROOT / "configs" / "digits_batchnorm.yaml", "--weights"]).stdout
    assert "Total params: 17802" in summary and "Trainable params: 17418" in summary
    assert "Non-trainable params: 384" in summary  # 2 × (128 + 64) moving statistics
    rows = {row[0]: row[1] for row in table_rows(summary) if row and "/" in row[0]}
    assert rows["batch_normalization_BatchNormalization1/moving_mean"] == "[128]"
    assert rows["batch_normalization_BatchNormalization2/moving_variance"] == "[64]"
    saved = load_weights(batchnorm_run / "weights.safetensors")
    moving_mean = saved["batch_normalization_BatchNormalization1/moving_mean"]
    moving_var = saved["batch_normalization_BatchNormalization1/moving_variance"]
    assert np.abs(moving_mean).max() > 0.05 and np.abs(moving_var - 1).max() > 0.05  # moved from zeros/ones
    # evaluating the saved run (inference: moving statistics) gives the validation numbers of training
    evaluated = ok(["evaluate", batchnorm_run]).stdout
    rows = {row[0]: float(row[1]) for row in table_rows(evaluated) if len(row) == 2 and row[0] in ("loss", "accuracy")}
    metrics = final_metrics(batchnorm_run)
    assert rows["accuracy"] == pytest.approx(metrics["val_accuracy"], abs=1e-4)
    assert rows["loss"] == pytest.approx(metrics["val_loss"], rel=1e-3)


def test_embedding_sequence_config_learns_the_hidden_rule(tmp_path):
    out = tmp_path / "run"
    ok(["train", ROOT / "configs" / "token_sequences.yaml", "--out", out, "--quiet",
        "--set", "data.train.n_samples=3000", "--set", "fit.epochs=5"])
    assert final_metrics(out)["val_accuracy"] > 0.85  # chance is 0.5


def test_embedding_index_out_of_range_names_the_data_row(tmp_path):
    x = np.random.default_rng(0).integers(0, 10, (50, 6)).astype(np.float32)
    x[36, 2] = 10  # vocabulary is 0..9
    np.savez(tmp_path / "tokens.npz", x=x, y=(x.sum(axis=1) > 27).astype(np.int64))
    config = tmp_path / "tokens.yaml"
    config.write_text(
        "name: tokens\nmodel:\n  layers:\n"
        "    - {type: embedding, input_dim: 10, output_dim: 4, input_length: 6}\n"
        "    - {type: flatten}\n    - {type: dense, units: 1, activation: sigmoid}\n"
        "optimizer: adam\nloss: binary_crossentropy\ndata:\n  train: {npz: tokens.npz}\nfit: {epochs: 1}\n")
    result = fails(["train", config, "--out", tmp_path / "run"])
    assert result.stderr.strip().splitlines()[-1].endswith(
        "row 37: embedding_Embedding1 index 10 (position 2) is not an integer in [0, 10)")
    assert len(result.stderr.strip().splitlines()) == 1


def test_images_reshaped_to_rows_cols_channels_and_augmented(tmp_path):
    """MNIST-10k as [28, 28, 1] and digits as [8, 8, 1] through the reshape step; digits
    trained with random translations of the training batches."""
    mnist = tmp_path / "mnist.yaml"
    mnist.write_text(
        f"name: m\nmodel:\n  layers:\n    - {{type: zero_padding2d, padding: 2, input_shape: [28, 28, 1]}}\n"
        "    - {type: flatten}\n    - {type: dense, units: 10, activation: softmax}\n"
        f"optimizer: adam\nloss: categorical_crossentropy\ndata:\n  train: {{npz: {ROOT}/data/mnist_10k.npz}}\n"
        "  preprocessing: [{type: rescale, scale: 0.00392156862745098}, {type: reshape, target_shape: [28, 28, 1]}]\n"
        "fit: {epochs: 1}\n")
    rows = table_rows(ok(["summary", mnist]).stdout)
    assert ["zero_padding2d_ZeroPadding2D1 (ZeroPadding2D)", "[null,32,32,1]", "0"] in rows
    ok(["validate", mnist])
    digits = tmp_path / "digits.yaml"
    digits.write_text(
        "name: d\nmodel:\n  layers:\n    - {type: up_sampling2d, input_shape: [8, 8, 1]}\n"
        "    - {type: flatten}\n    - {type: dense, units: 10, activation: softmax}\n"
        f"optimizer: adam\nloss: categorical_crossentropy\nmetrics: [accuracy]\n"
        f"data:\n  train: {{csv: {ROOT}/data/digits.csv, target: digit}}\n"
        "  validation_split: 0.2\n"
        "  preprocessing: [{type: rescale, scale: 0.0625}, {type: reshape, target_shape: [8, 8, 1]},\n"
        "                  {type: random_translation, height_factor: 0.1, width_factor: 0.1, fill_mode: constant}]\n"
        "fit: {epochs: 5}\n")
    out = tmp_path / "digits-run"
    ok(["train", digits, "--out", out, "--quiet"])
    assert final_metrics(out)["val_accuracy"] > 0.8
