"""How a run ends, through the CLI: the closing summary (restored epoch after early stopping,
only this process's epochs after --resume) and the checkpoints a finished run keeps."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from tests.test_cli import SMALL, ok


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "small.yaml"
    path.write_text(SMALL)
    return path


def checkpoints(run):
    return sorted(p.name for p in (run / "checkpoints").iterdir())


def history(run):
    return list(csv.DictReader(open(run / "history.csv", newline="")))


def test_a_finished_run_keeps_only_its_last_checkpoint(tmp_path, config):
    ok(["train", config, "--out", tmp_path / "run", "-q"])
    assert checkpoints(tmp_path / "run") == ["00000004-epoch-0003"]  # start, 3 epochs: only the last stays
    ok(["train", config, "--out", tmp_path / "kept", "-q", "--keep-checkpoints", "2"])
    assert checkpoints(tmp_path / "kept") == ["00000003-epoch-0002", "00000004-epoch-0003"]


def test_a_forced_resume_continues_from_the_kept_checkpoint_and_counts_its_own_epochs(tmp_path, config):
    ok(["train", config, "--out", tmp_path / "run", "-q"])
    resumed = ok(["train", "--resume", tmp_path / "run", "--force", "--set", "fit.epochs=5", "-q"])
    summary = [line for line in resumed.stdout.splitlines() if line.startswith("trained")]
    assert summary and summary[0].startswith("trained 2 epochs (4–5) in "), resumed.stdout
    assert [row["epoch"] for row in history(tmp_path / "run")] == ["1", "2", "3", "4", "5"]
    ok(["train", config, "--out", tmp_path / "straight", "-q", "--set", "fit.epochs=5"])
    from safetensors.numpy import load_file

    a, b = load_file(tmp_path / "run" / "weights.safetensors"), load_file(tmp_path / "straight" / "weights.safetensors")
    assert all(np.array_equal(a[k], b[k]) for k in a)  # exactly the uninterrupted 5-epoch run
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["epochs"] == 5
    assert len(checkpoints(tmp_path / "run")) == 1


def test_after_early_stopping_with_restore_the_summary_shows_the_restored_epoch(tmp_path, config):
    # loss falls every epoch, so with mode max the best epoch is the first: stop at 3, restore 1.
    text = config.read_text().replace("  epochs: 3\n", "  epochs: 10\n") + (
        "callbacks: [{type: early_stopping, monitor: loss, mode: max, patience: 2, restore_best_weights: true}]\n")
    config.write_text(text)
    result = ok(["train", config, "--out", tmp_path / "run"])
    rows = history(tmp_path / "run")
    assert len(rows) == 3
    summary = next(line for line in result.stdout.splitlines() if line.startswith("trained"))
    assert summary.startswith("trained 3 epochs in ") and "restored epoch 1:" in summary
    assert f"loss {float(rows[0]['loss']):.4g}" in summary and f"loss {float(rows[2]['loss']):.4g}" not in summary
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["restored_epoch"] == 1 and metrics["loss"] == pytest.approx(float(rows[0]["loss"]))
    assert "restored the weights of epoch 1" in result.stderr
