"""Training from a stream (the fitDataset path) through `trainctl train`: the same accuracy
as the in-memory fit on the same data, progress for streams of known length (.npy) and
unknown length (CSV), and evaluate / predict on a run trained from a stream.

The data: 6,000 rows of 16 features with different scales and offsets (so the
standardize step matters), 4 classes from a fixed random tanh network; the last 1,200 rows
are held out. The stream's shuffle buffer (1,000 rows) is smaller than the 4,800 training
rows, so it only shuffles locally, as tf.data's does.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from trainctl.cli import app

ROOT = Path(__file__).resolve().parent.parent
N_ROWS, N_FEATURES, N_CLASSES, N_TRAIN = 6000, 16, 4, 4800
EPOCHS, BATCH_SIZE = 8, 32
PLAIN_ENV = {"FORCE_COLOR": None, "TTY_COMPATIBLE": None, "NO_COLOR": None, "TTY_INTERACTIVE": None,
             "COLUMNS": "200"}
TERMINAL_ENV = {**PLAIN_ENV, "FORCE_COLOR": "1", "NO_COLOR": "1"}  # rich live bar, no colour codes

CONFIG = """\
name: {name}
seed: 0
model:
  layers:
    - {{type: dense, units: 32, activation: relu, input_shape: [{n_features}]}}
    - {{type: dense, units: {n_classes}, activation: softmax}}
optimizer: {{type: adam, learning_rate: 0.003}}
loss: categorical_crossentropy
metrics: [accuracy]
data:
{data}
  preprocessing: [{{type: standardize}}]
fit: {{epochs: {epochs}, batch_size: {batch_size}, shuffle: true}}
"""

DATA = {
    "memory": """\
  train: {npy: x.npy, targets: y.npy}
  validation_split: 0.2""",
    "npy_stream": """\
  train:
    stream:
      source: {npy: x.npy, targets: y.npy}
      shuffle: {buffer_size: 1000}
      chunk_rows: 700
  validation_split: 0.2""",
    "csv_stream": """\
  train:
    stream:
      source: {csv: train.csv, target: label}
      shuffle: 1000
      chunk_rows: 700
  validation: {csv: val.csv, target: label}""",
}


def invoke(args, env=PLAIN_ENV):
    result = CliRunner().invoke(app, [str(a) for a in args], env=env)
    assert result.exit_code == 0, (result.exit_code, result.stdout, result.stderr, result.exception)
    return result


def table_values(text: str) -> dict[str, str]:
    text = re.split(r"^per (?:class|target)", text, flags=re.M)[0]  # the metrics table, not evaluate's report
    rows = [[c.strip() for c in line.strip().split("│")[1:-1]] for line in text.splitlines()
            if line.lstrip().startswith("│")]
    return {row[0]: row[1] for row in rows}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """The data as x.npy / y.npy (all rows), train.csv / val.csv (the same rows split), val.npz
    and xval.npy (the held-out rows), and one config per way of reading them."""
    directory = tmp_path_factory.mktemp("stream")
    rng = np.random.default_rng(0)
    scale = np.linspace(0.5, 4.0, N_FEATURES)
    x = (rng.normal(size=(N_ROWS, N_FEATURES)) * scale + 3.0).astype(np.float32)
    teacher = rng.normal(size=(N_FEATURES, N_CLASSES))
    y = np.argmax(np.tanh(((x - 3.0) / scale) @ teacher), axis=1).astype(np.int64)
    assert np.bincount(y, minlength=N_CLASSES).min() > 300, "every class is well represented"
    np.save(directory / "x.npy", x)
    np.save(directory / "y.npy", y)
    np.savez(directory / "val.npz", x=x[N_TRAIN:], y=y[N_TRAIN:])
    np.save(directory / "xval.npy", x[N_TRAIN:])
    header = ",".join([f"f{i}" for i in range(N_FEATURES)] + ["label"])
    for name, rows in (("train.csv", slice(0, N_TRAIN)), ("val.csv", slice(N_TRAIN, N_ROWS))):
        # %.9g round-trips float32 exactly, so the CSV holds the same numbers as the .npy
        np.savetxt(directory / name, np.c_[x[rows], y[rows]], fmt="%.9g", delimiter=",", header=header, comments="")
    for name, data in DATA.items():
        (directory / f"{name}.yaml").write_text(CONFIG.format(
            name=name, data=data, n_features=N_FEATURES, n_classes=N_CLASSES, epochs=EPOCHS, batch_size=BATCH_SIZE))
    return directory


def train(workdir: Path, name: str, tag: str, *extra: str, env=PLAIN_ENV):
    """(run directory, CliRunner result) of `trainctl train` on one of the configs."""
    out = workdir / f"run-{name}-{tag}"
    return out, invoke(["train", workdir / f"{name}.yaml", "--out", out, *extra], env=env)


@pytest.fixture(scope="module")
def runs(workdir) -> dict[str, tuple[Path, dict]]:
    """Each config trained once, quietly: {name: (run dir, metrics.json)}."""
    trained = {}
    for name in DATA:
        out, _ = train(workdir, name, "quiet", "-q")
        trained[name] = (out, json.loads((out / "metrics.json").read_text()))
    return trained


# ---------------------------------------------------------------------- same accuracy

@pytest.mark.parametrize("stream", ["npy_stream", "csv_stream"])
def test_streaming_fit_reaches_the_in_memory_accuracy(runs, stream):
    memory = runs["memory"][1]
    streamed = runs[stream][1]
    assert memory["val_accuracy"] >= 0.95, memory
    assert streamed["val_accuracy"] == pytest.approx(memory["val_accuracy"], abs=0.015), (streamed, memory)
    assert streamed["val_loss"] == pytest.approx(memory["val_loss"], rel=0.2), (streamed, memory)
    assert streamed["epochs"] == memory["epochs"] == EPOCHS


def test_the_map_stage_fits_standardize_on_the_training_rows_only(runs, workdir):
    """The stream's one pass over the file computes the in-memory fit's statistics; the
    held-out rows (last 20%) are left out of them."""
    from trainctl.runs.inference import open_run

    x = np.load(workdir / "x.npy")
    expected_mean = x[:N_TRAIN].mean(axis=0)
    for name in DATA:
        state = open_run(runs[name][0]).preprocessing.to_arrays()
        means = [v for k, v in state.items() if "mean" in k]
        assert len(means) == 1, (name, list(state))
        np.testing.assert_allclose(means[0].reshape(-1), expected_mean, rtol=1e-5, atol=1e-5, err_msg=name)
        assert not np.allclose(means[0].reshape(-1), x.mean(axis=0), rtol=1e-5, atol=1e-5), name


def test_npy_and_csv_streams_of_the_same_rows_train_the_same_weights(runs):
    """Chunk size and file format do not change what the pipeline emits: the same rows in the
    same shuffle-buffer order give the same weights (the CSV holds the float32 values exactly)."""
    from trainctl.runs.inference import open_run

    npy = open_run(runs["npy_stream"][0]).model
    csv = open_run(runs["csv_stream"][0]).model
    for a, b in zip(npy.weights, csv.weights):
        np.testing.assert_allclose(a.value, b.value, rtol=1e-5, atol=1e-6, err_msg=a.name)


# ---------------------------------------------------------------------- progress display

@pytest.mark.parametrize("name", ["npy_stream", "csv_stream"])
def test_jsonl_progress_has_one_event_per_epoch_for_known_and_unknown_length(workdir, name):
    out, result = train(workdir, name, "jsonl", "--log-format", "jsonl")
    events = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    epochs = [e for e in events if e["event"] == "epoch_end"]
    assert [e["epoch"] for e in epochs] == list(range(1, EPOCHS + 1))
    assert all(e["epochs"] == EPOCHS for e in epochs)
    for event in epochs:
        for key in ("loss", "accuracy", "val_loss", "val_accuracy", "seconds"):
            assert isinstance(event[key], float) and math.isfinite(event[key]), (key, event)
    assert epochs[-1]["loss"] < epochs[0]["loss"]
    assert events[-1]["event"] == "train_end" and events[-1]["epochs_completed"] == EPOCHS
    metrics = json.loads((out / "metrics.json").read_text())
    assert events[-1]["val_accuracy"] == epochs[-1]["val_accuracy"] == metrics["val_accuracy"]


@pytest.mark.parametrize("name, counter", [
    ("npy_stream", re.compile(rf"batch \d+/{math.ceil(N_TRAIN / BATCH_SIZE)}\b")),  # known: k/150 and a bar
    ("csv_stream", re.compile(r"batch \d+(?!\d|/)")),  # unknown: k alone
])
def test_live_bar_counts_batches_against_a_known_or_unknown_length(workdir, name, counter):
    _, terminal = train(workdir, name, "tty", env=TERMINAL_ENV)
    lines = [line for line in re.split(r"[\r\n]", terminal.stdout) if "batch" in line]
    assert lines, terminal.stdout[:500]
    assert all(counter.search(line) for line in lines), lines[:5]
    assert ("━" in "".join(lines)) == (name == "npy_stream"), "a bar only when the length is known"
    assert f"Epoch {EPOCHS}/{EPOCHS}" in terminal.stdout


# ---------------------------------------------------------------------- evaluate and predict

def test_evaluate_a_stream_run_on_the_held_out_file_equals_metrics_json(runs, workdir):
    run_dir, metrics = runs["npy_stream"]
    values = table_values(invoke(["evaluate", run_dir, "--data", workdir / "val.npz"]).stdout)
    assert values == {"loss": f"{metrics['val_loss']:.4f}", "accuracy": f"{metrics['val_accuracy']:.4f}"}


def test_evaluate_a_csv_stream_run_on_its_own_validation_data(runs):
    run_dir, metrics = runs["csv_stream"]
    result = invoke(["evaluate", run_dir])
    assert "val.csv" in result.stdout
    assert table_values(result.stdout) == {"loss": f"{metrics['val_loss']:.4f}", "accuracy": f"{metrics['val_accuracy']:.4f}"}


@pytest.mark.parametrize("name", ["npy_stream", "csv_stream"])
def test_predict_with_a_stream_run_gives_its_validation_accuracy(runs, workdir, name):
    run_dir, metrics = runs[name]
    out = workdir / f"predictions-{name}.npy"
    invoke(["predict", run_dir, "--input", workdir / "xval.npy", "--output", out])
    probabilities = np.load(out)
    assert probabilities.shape == (N_ROWS - N_TRAIN, N_CLASSES)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    accuracy = float(np.mean(probabilities.argmax(axis=1) == np.load(workdir / "y.npy")[N_TRAIN:]))
    assert accuracy == pytest.approx(metrics["val_accuracy"], abs=1e-12)


def test_evaluate_a_stream_run_on_its_own_validation_split(runs):
    run_dir, metrics = runs["npy_stream"]
    result = CliRunner().invoke(app, ["evaluate", str(run_dir)], env=PLAIN_ENV)
    assert result.exit_code == 0, result.stderr
    assert "last 1200 samples of x.npy" in result.stdout
    assert table_values(result.stdout) == {"loss": f"{metrics['val_loss']:.4f}", "accuracy": f"{metrics['val_accuracy']:.4f}"}


def test_evaluate_a_csv_stream_run_on_a_csv_file(runs, workdir):
    run_dir, metrics = runs["csv_stream"]
    result = CliRunner().invoke(app, ["evaluate", str(run_dir), "--data", str(workdir / "val.csv")], env=PLAIN_ENV)
    assert result.exit_code == 0, result.stderr
    assert table_values(result.stdout) == {"loss": f"{metrics['val_loss']:.4f}", "accuracy": f"{metrics['val_accuracy']:.4f}"}


# ---------------------------------------------------------------------- the shipped example

@pytest.mark.slow
def test_shipped_stream_npy_config_matches_the_in_memory_mnist_config(tmp_path):
    data = np.load(ROOT / "data" / "mnist_10k.npz")
    np.save(tmp_path / "x.npy", data["x"])
    np.save(tmp_path / "y.npy", data["y"])
    invoke(["train", ROOT / "configs" / "stream_npy.yaml", "--out", tmp_path / "stream", "-q",
            "--set", f"data.train.stream.source.npy={tmp_path / 'x.npy'}",
            "--set", f"data.train.stream.source.targets={tmp_path / 'y.npy'}"])
    invoke(["train", ROOT / "configs" / "mnist.yaml", "--out", tmp_path / "memory", "-q"])
    streamed = json.loads((tmp_path / "stream" / "metrics.json").read_text())
    memory = json.loads((tmp_path / "memory" / "metrics.json").read_text())
    assert streamed["val_accuracy"] >= 0.92, streamed
    assert streamed["val_accuracy"] == pytest.approx(memory["val_accuracy"], abs=0.015), (streamed, memory)
    np.savez(tmp_path / "held_out.npz", x=data["x"][8000:], y=data["y"][8000:])
    values = table_values(invoke(["evaluate", tmp_path / "stream", "--data", tmp_path / "held_out.npz"]).stdout)
    assert values == {"loss": f"{streamed['val_loss']:.4f}", "accuracy": f"{streamed['val_accuracy']:.4f}"}


def test_validation_given_as_its_own_stream(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3000, 8)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.float32)
    np.save(tmp_path / "x.npy", x[:2400]), np.save(tmp_path / "y.npy", y[:2400])
    np.save(tmp_path / "xv.npy", x[2400:]), np.save(tmp_path / "yv.npy", y[2400:])
    (tmp_path / "c.yaml").write_text(
        "name: vs\nmodel:\n  layers:\n    - {type: dense, units: 8, activation: relu, input_shape: [8]}\n"
        "    - {type: dense, units: 1, activation: sigmoid}\noptimizer: {type: adam, learning_rate: 0.01}\n"
        "loss: binary_crossentropy\nmetrics: [accuracy]\ndata:\n"
        "  train: {stream: {source: {npy: x.npy, targets: y.npy}, shuffle: {buffer_size: 500}}}\n"
        "  validation: {stream: {source: {npy: xv.npy, targets: yv.npy}}}\nfit: {epochs: 5}\n")
    invoke(["train", tmp_path / "c.yaml", "--out", tmp_path / "run", "-q"])
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["val_accuracy"] > 0.9, metrics
    values = table_values(invoke(["evaluate", tmp_path / "run"]).stdout)
    assert values == {"loss": f"{metrics['val_loss']:.4f}", "accuracy": f"{metrics['val_accuracy']:.4f}"}
