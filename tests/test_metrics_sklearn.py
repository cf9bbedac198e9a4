"""Metrics as Keras users expect them (issue 14, items 1-5), each against scikit-learn's
value (a test-only dependency), through the public API (resolve_metric, the model's
compile/evaluate) and the CLI (configs with metric options, aliases in monitors and
compare, evaluate's classification report)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

sklearn_metrics = pytest.importorskip("sklearn.metrics")

from tests.test_cli import error_lines, fails, ok, table_rows, write  # noqa: E402
from trainctl.nn.metrics import resolve_metric  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def binary_batch(n=400, seed=0):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.4).astype(np.float32)
    p = np.clip(0.35 * y + 0.65 * rng.random(n), 0, 1).astype(np.float32)
    return y, p


def softmax_batch(n=300, k=4, seed=1):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k)) + 1.5 * np.eye(k)[labels]
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return labels, np.eye(k, dtype=np.float32)[labels], p.astype(np.float32)


def value(spec, y_true, y_pred, loss="binary_crossentropy"):
    return resolve_metric(spec, loss, (None, y_pred.shape[-1])).compute(y_true, y_pred)


def test_precision_recall_threshold_and_class_id_match_sklearn():
    y, p = binary_batch()
    for threshold in (0.5, 0.3, 0.8):
        spec = {"type": "precision", "thresholds": threshold}
        assert value(spec, y[:, None], p[:, None]) == pytest.approx(sklearn_metrics.precision_score(y, p > threshold))
        spec = {"type": "recall", "thresholds": threshold}
        assert value(spec, y[:, None], p[:, None]) == pytest.approx(sklearn_metrics.recall_score(y, p > threshold))
    labels, onehot, probs = softmax_batch()
    for class_id in range(4):
        got = value({"type": "precision", "class_id": class_id}, onehot, probs, "categorical_crossentropy")
        want = sklearn_metrics.precision_score(labels == class_id, probs[:, class_id] > 0.5)
        assert got == pytest.approx(want)
        got = value({"type": "recall", "class_id": class_id}, onehot, probs, "categorical_crossentropy")
        assert got == pytest.approx(sklearn_metrics.recall_score(labels == class_id, probs[:, class_id] > 0.5))
    assert 0.05 < value("precision", y[:, None], p[:, None]) < 0.95  # not trivially 0 as TF.js reads it


def test_auc_roc_and_pr_match_sklearn_within_the_threshold_grid():
    y, p = binary_batch(2000)
    roc = value("auc", y[:, None], p[:, None])
    assert roc == pytest.approx(sklearn_metrics.roc_auc_score(y, p), abs=2e-3)
    pr = value({"type": "auc", "curve": "PR"}, y[:, None], p[:, None])
    assert pr == pytest.approx(sklearn_metrics.average_precision_score(y, p), abs=1e-2)
    fine = value({"type": "auc", "num_thresholds": 2000}, y[:, None], p[:, None])
    assert abs(fine - sklearn_metrics.roc_auc_score(y, p)) < abs(roc - sklearn_metrics.roc_auc_score(y, p)) + 1e-4


@pytest.mark.keras
def test_auc_equals_keras_exactly():
    import os

    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras")
    y, p = binary_batch(500, seed=3)
    for options in ({}, {"curve": "PR"}, {"num_thresholds": 50}):
        metric = keras.metrics.AUC(**options)
        metric.update_state(y, p)
        got = value({"type": "auc", **options}, y[:, None], p[:, None])
        assert got == pytest.approx(float(metric.result()), abs=1e-5), options


@pytest.mark.parametrize("k", [1, 2, 3])
def test_top_k_accuracy_matches_sklearn(k):
    labels, onehot, probs = softmax_batch()
    want = sklearn_metrics.top_k_accuracy_score(labels, probs, k=k, labels=range(4))
    assert value({"type": "top_k_categorical_accuracy", "k": k}, onehot, probs, "categorical_crossentropy") == pytest.approx(want)
    sparse = labels[:, None].astype(np.float32)
    got = value({"type": "sparse_top_k_categorical_accuracy", "k": k}, sparse, probs, "sparse_categorical_crossentropy")
    assert got == pytest.approx(want)


@pytest.mark.parametrize("average", ["macro", "micro", "weighted"])
def test_f1_score_matches_sklearn(average):
    labels, onehot, probs = softmax_batch()
    want = sklearn_metrics.f1_score(labels, probs.argmax(1), average=average)
    got = value({"type": "f1_score", "average": average}, onehot, probs, "categorical_crossentropy")
    assert got == pytest.approx(want)
    y, p = binary_batch()
    assert value("f1_score", y[:, None], p[:, None]) == pytest.approx(sklearn_metrics.f1_score(y, p > 0.5))


def test_mean_iou_matches_sklearn_jaccard():
    labels, onehot, probs = softmax_batch()
    want = sklearn_metrics.jaccard_score(labels, probs.argmax(1), average="macro")
    assert value("mean_iou", onehot, probs, "categorical_crossentropy") == pytest.approx(want)
    sparse = labels[:, None].astype(np.float32)
    assert value("mean_iou", sparse, probs, "sparse_categorical_crossentropy") == pytest.approx(want)


def test_metric_options_are_validated_in_the_config(tmp_path):
    config = write(tmp_path / "m.yaml", BREAST.replace("METRICS", "[{type: auc, curve: ROCX}, {type: precision, treshold: 0.5}]"))
    lines = error_lines(fails(["validate", config]))
    assert any(":8:" in line and "metrics.0" in line and "curve must be ROC or PR" in line for line in lines), lines
    assert any("metrics.1.treshold" in line and "did you mean 'thresholds'" in line for line in lines), lines


# ---------------------------------------------------------------- through training


BREAST = """\
name: cancer
seed: 0
model:
  layers:
    - {type: dense, units: 8, activation: relu, input_shape: [30]}
    - {type: dense, units: 1, activation: sigmoid}
optimizer: {type: adam, learning_rate: 0.01, epsilon: 0}
metrics: METRICS
loss: binary_crossentropy
data:
  train: {csv: CSV, target: diagnosis, class_names: [benign, malignant]}
  preprocessing: [standardize]
  validation_split: 0.2
fit: {epochs: 3, batch_size: 512}
callbacks:
  - {type: early_stopping, monitor: MONITOR, patience: 5, mode: max}
"""


def breast(tmp_path: Path, metrics: str, monitor: str = "val_loss") -> Path:
    text = BREAST.replace("METRICS", metrics).replace("CSV", str(ROOT / "data" / "breast_cancer.csv"))
    return write(tmp_path / f"cancer{abs(hash((metrics, monitor)))}.yaml", text.replace("MONITOR", monitor))


@pytest.fixture(scope="module")
def cancer_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cancer")
    config = breast(tmp, "[acc, precision, recall, auc, {type: auc, curve: PR, name: pr_auc}, f1_score]", "val_accuracy")
    ok(["train", config, "--out", tmp / "run", "-q"])
    return tmp, tmp / "run"


def test_log_keys_are_the_names_written_and_monitors_take_either_spelling(cancer_run):
    tmp, run = cancer_run
    header = (run / "history.csv").read_text().splitlines()[0].split(",")
    assert header == ["epoch", "loss", "acc", "precision", "recall", "auc", "pr_auc", "f1_score",
                      "val_loss", "val_acc", "val_precision", "val_recall", "val_auc", "val_pr_auc", "val_f1_score"]
    # early_stopping monitored val_accuracy (Keras spelling) while the log says val_acc (TF.js): no error above
    ok(["compare", run, "--metric", "val_accuracy"])
    ok(["compare", run, "--metric", "val_acc"])


def test_evaluate_classification_report_matches_sklearn(cancer_run):
    tmp, run = cancer_run
    report_path = tmp / "report.json"
    result = ok(["evaluate", run, "--output", report_path, "--plot", tmp / "cm.png"])
    report = json.loads(report_path.read_text())
    assert report["task"] == "classification" and report["classes"] == ["benign", "malignant"]
    from trainctl.runs.inference import open_run

    opened = open_run(run)
    import csv

    with open(ROOT / "data" / "breast_cancer.csv", newline="") as f:
        rows = list(csv.DictReader(f))[455:]  # the validation split: the last 20%
    x = np.array([[float(r[k]) for k in r if k != "diagnosis"] for r in rows], np.float32)
    from trainctl.data import apply_preprocessing

    probabilities = opened.model.predict(apply_preprocessing(opened.preprocessing, x))[:, 0]
    truth = np.array([r["diagnosis"] == "malignant" for r in rows], int)
    predicted = (probabilities > 0.5).astype(int)
    want = sklearn_metrics.classification_report(truth, predicted, output_dict=True, zero_division=0)
    for i, row in enumerate(report["per_class"]):
        for key, sk in (("precision", "precision"), ("recall", "recall"), ("f1", "f1-score"), ("support", "support")):
            assert row[key] == pytest.approx(want[str(i)][sk]), (row, key)
    assert report["accuracy"] == pytest.approx(want["accuracy"])
    assert report["confusion_matrix"] == sklearn_metrics.confusion_matrix(truth, predicted).tolist()
    printed = table_rows(result.stdout)
    assert ["class", "precision", "recall", "f1", "support"] in printed
    assert any(r and r[0] == "malignant" for r in printed)
    assert (tmp / "cm.png").read_bytes()[:4] == b"\x89PNG"
    # the loss/metrics table at the top agrees with the report (one batch: whole-data values)
    metrics = report["metrics"]
    assert metrics["precision"] == pytest.approx(report["per_class"][1]["precision"], abs=1e-6)
    assert metrics["recall"] == pytest.approx(report["per_class"][1]["recall"], abs=1e-6)
    assert metrics["auc"] == pytest.approx(sklearn_metrics.roc_auc_score(truth, probabilities), abs=5e-3)


def test_epsilon_zero_is_accepted_for_the_adaptive_optimizers(tmp_path):
    for optimizer in ("adam", "adamax", "adadelta", "rmsprop"):
        config = write(tmp_path / f"{optimizer}.yaml", BREAST.replace("{type: adam, learning_rate: 0.01, epsilon: 0}",
                                                                      f"{{type: {optimizer}, learning_rate: 0.01, epsilon: 0}}")
                       .replace("METRICS", "[acc]").replace("CSV", str(ROOT / "data" / "breast_cancer.csv"))
                       .replace("MONITOR", "val_loss"))
        assert ok(["validate", config]).stdout.strip() == "ok", optimizer
    bad = write(tmp_path / "neg.yaml", config.read_text().replace("epsilon: 0", "epsilon: -1"))
    assert "epsilon" in error_lines(fails(["validate", bad]))[0]
