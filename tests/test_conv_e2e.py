"""The convolutional configs through the real CLI: `trainctl summary` prints TF.js 4.22's rows
for the TF.js MNIST CNN, and both image configs reach their held-out accuracy.

Measured (seed 0): configs/mnist_cnn.yaml 0.982 on the last 2,000 MNIST-10k images,
configs/digits_cnn.yaml on the last 360 digits (see its header)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.test_datasets_e2e import CONFIGS, ok, table_rows, train


def test_summary_prints_the_tfjs_rows_of_the_mnist_cnn():
    text = ok(["summary", CONFIGS / "mnist_cnn.yaml"]).stdout
    assert table_rows(text)[1:] == [  # TF.js 4.22 model.summary() for the same model
        ["conv2d_Conv2D1 (Conv2D)", "[null,24,24,8]", "208"],
        ["max_pooling2d_MaxPooling2D1 (MaxPooling2D)", "[null,12,12,8]", "0"],
        ["conv2d_Conv2D2 (Conv2D)", "[null,8,8,16]", "3216"],
        ["max_pooling2d_MaxPooling2D2 (MaxPooling2D)", "[null,4,4,16]", "0"],
        ["flatten_Flatten1 (Flatten)", "[null,256]", "0"],
        ["dense_Dense1 (Dense)", "[null,10]", "2570"],
    ]
    assert "Total params: 5994" in text and "Non-trainable params: 0" in text


def test_digits_cnn_reaches_98_percent_held_out(tmp_path):
    metrics = train(CONFIGS / "digits_cnn.yaml", tmp_path / "digits_cnn")
    assert metrics["val_accuracy"] >= 0.98, metrics


@pytest.mark.slow
def test_mnist_cnn_reaches_98_percent_held_out(tmp_path):
    metrics = train(CONFIGS / "mnist_cnn.yaml", tmp_path / "mnist_cnn")
    assert metrics["val_accuracy"] >= 0.98, metrics
    weights = json.loads((tmp_path / "mnist_cnn" / "model.json").read_text())["weights"]
    assert {w["name"]: w["shape"] for w in weights}["conv2d_Conv2D1/kernel"] == [5, 5, 1, 8]


def test_a_conv_layer_problem_is_one_located_line(tmp_path):
    config = tmp_path / "bad.yaml"
    text = (CONFIGS / "mnist_cnn.yaml").read_text().replace("kernel_size: 5, strides: 1", "kernel_size: 30, strides: 1", 1)
    config.write_text(text.replace("../data/", str(Path(CONFIGS).parent / "data") + "/"))
    from typer.testing import CliRunner

    from tests.test_datasets_e2e import PLAIN_ENV
    from trainctl.cli import app

    result = CliRunner().invoke(app, ["validate", str(config)], env=PLAIN_ENV)
    assert result.exit_code == 1
    message = (result.stderr or result.stdout).strip()
    assert "bad.yaml:" in message and "smaller than the kernel" in message and "Traceback" not in message, message
