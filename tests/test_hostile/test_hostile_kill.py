"""Kill loops beside tests/test_resume.py's: SIGKILL inside file writes, inside checkpoint
saves and between checkpoints (deterministic kill points, tests/kill_points.py: the test
picks the instant, nothing in production code is slowed or hooked), resume, repeat; the
final weights, history and optimizer state are bit-identical to an uninterrupted run. One
on a streamed config (shuffle buffer), one with dropout."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.kill_points import kill_loop
from tests.test_hostile.common import ENV, TRAINCTL, sha256
from tests.fixtures import teacher_config

DROPOUT = teacher_config(name="kill-dropout", seed=5, units=24, n_features=12, n_samples=3000, hidden=6,
                         layers=("{type: dropout, rate: 0.3}",), optimizer="{type: adam, learning_rate: 0.003}",
                         fit="{epochs: 8, batch_size: 16, validation_split: 0.2}")
STREAM = teacher_config(name="kill-stream", seed=7, units=16, n_features=8, n_classes=4,
                        layers=("{type: dropout, rate: 0.2}",), optimizer="{type: adam, learning_rate: 0.003}",
                        train="\n    stream:\n      source: {npy: x.npy, targets: y.npy}\n      shuffle: {buffer_size: 300}"
                              "\n      chunk_rows: 256",
                        data=("validation_split: 0.2",), fit="{epochs: 8, batch_size: 16}")
ENVIRONMENT = {**os.environ, **ENV, "NUMBA_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
SCHEDULES = {  # (kill point, occurrence in that process) of each kill
    "dropout": [("save", 2), ("write", 9), ("publish", 3), ("save", 6)],
    "stream": [("publish", 2), ("save", 4), ("write", 14), ("publish", 1)],
}


def train_args(config: Path, out: Path) -> list[str]:
    return ["train", str(config), "--out", str(out), "-q", "--threads", "1", "--checkpoint-every", "20"]


def resume_args(out: Path) -> list[str]:
    return ["train", "--resume", str(out), "-q", "--threads", "1"]


@pytest.mark.parametrize("name", ["dropout", "stream"])
def test_kill_loop_without_the_test_hook_is_bit_identical(tmp_path, name):
    config = tmp_path / f"{name}.yaml"
    config.write_text(DROPOUT if name == "dropout" else STREAM)
    if name == "stream":
        rng = np.random.default_rng(0)
        x = rng.standard_normal((2400, 8)).astype(np.float32)
        np.save(tmp_path / "x.npy", x)
        np.save(tmp_path / "y.npy", (x[:, :4] @ rng.standard_normal(4) > 0).astype(np.int64) + 2 * (x[:, 5] > 0))
    reference = tmp_path / "reference"
    done = subprocess.run([*TRAINCTL, *train_args(config, reference)], capture_output=True, text=True,
                          env=ENVIRONMENT, timeout=300)
    assert done.returncode == 0, done.stderr
    out = tmp_path / "killed"
    landed = kill_loop(SCHEDULES[name], train_args(config, out), resume_args(out), out, ENVIRONMENT)
    assert landed == [phase for phase, _ in SCHEDULES[name]]  # every kill landed where it was scheduled
    assert sha256(out / "weights.safetensors") == sha256(reference / "weights.safetensors")
    assert (out / "history.csv").read_bytes() == (reference / "history.csv").read_bytes()
    assert sha256(out / "optimizer.safetensors") == sha256(reference / "optimizer.safetensors")
