"""Faults while training: a read-only output directory, a full disk, a diverging run. Each
gives one clear line, exit code 1, no traceback, and leaves what was saved before intact."""

from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from trainctl.cli import app
from tests.fixtures import teacher_config

CONFIG = teacher_config(name="faults", seed=1, units=16, n_features=8, n_samples=600,
                        fit="{epochs: 4, batch_size: 20, validation_split: 0.25}")
REGRESSION = """\
name: diverge
seed: 0
model:
  layers:
    - {type: dense, units: 1, input_shape: [1]}
optimizer: {type: sgd, learning_rate: 0.1}
loss: mean_squared_error
data:
  train: {generator: linear, n_samples: 200, true_w: 3.0, true_b: 2.0, noise: 1.0}
fit: {epochs: 6, batch_size: 50, shuffle: false}
"""


def invoke(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "200", "TERM": "dumb"})


def one_error_line(result) -> str:
    assert result.exit_code == 1, (result.exit_code, result.output, result.exception)
    text = result.output
    assert "Traceback" not in text
    lines = [line for line in text.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and len(text.strip().splitlines()) == 1, text
    return lines[0]


def hashes(root: Path, vanishing: bool = False) -> dict[str, str]:
    """sha256 of every run file (the run-dir lock's own files are not run files: a process
    that fails before releasing the lock leaves them, harmlessly). `vanishing`: skip files
    removed while they are read (old checkpoints a run's syncer thread is pruning)."""
    from trainctl.runs.lock import lock_names

    found = {}
    for folder, _, names in os.walk(root):  # os.walk skips a folder removed while it walks
        for name in names:
            p = Path(folder, name)
            if name in lock_names() or any(part.startswith(".tmp-") for part in p.relative_to(root).parts):
                continue
            try:
                found[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
            except FileNotFoundError:
                if not vanishing:
                    raise
    return dict(sorted(found.items()))


@pytest.fixture
def config(tmp_path) -> Path:
    path = tmp_path / "faults.yaml"
    path.write_text(CONFIG)
    return path


def _make_read_only(path: Path) -> bool:
    if os.geteuid() != 0:
        path.chmod(0o555)
        return True
    return shutil.which("chattr") is not None and subprocess.run(["chattr", "+i", str(path)]).returncode == 0


def _make_writable(path: Path) -> None:
    if os.geteuid() == 0:
        subprocess.run(["chattr", "-i", str(path)], check=False)
    path.chmod(0o755)


def test_read_only_output_directory(config, tmp_path):
    done = invoke("train", config, "--out", tmp_path / "run", "-q", "--set", "fit.epochs=2")
    assert done.exit_code == 0, done.output
    runs = tmp_path / "runs"
    runs.mkdir()
    run = tmp_path / "run"
    if not (_make_read_only(runs) and _make_read_only(run)):
        pytest.skip("cannot make a directory read-only here")
    try:
        before = hashes(run)
        line = one_error_line(invoke("train", config, "--runs-root", runs, "-q"))
        assert str(runs / "faults") in line and ("Permission denied" in line or "not permitted" in line)
        # resuming (with more epochs) must write into the run directory: refused cleanly
        line = one_error_line(invoke("train", "--resume", run, "--force", "--set", "fit.epochs=3", "-q"))
        assert str(run) in line and "cannot write" in line
        assert hashes(run) == before
    finally:
        _make_writable(runs)
        _make_writable(run)


def test_disk_full_mid_run_then_resume_is_exact(config, tmp_path, monkeypatch):
    import trainctl.runs.atomic as atomic

    reference = tmp_path / "reference"
    assert invoke("train", config, "--out", reference, "-q", "--checkpoint-every", "5").exit_code == 0
    run = tmp_path / "run"
    real_write = atomic._write_fd
    calls = {"n": 0, "snapshot": None}

    def write_until_full(fd, data):
        calls["n"] += 1
        if calls["n"] >= 60:
            if calls["snapshot"] is None:
                calls["snapshot"] = hashes(run, vanishing=True)  # the checkpoint syncer may be pruning
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    monkeypatch.setattr(atomic, "_write_fd", write_until_full)
    line = one_error_line(invoke("train", config, "--out", run, "-q", "--checkpoint-every", "5"))
    assert "No space left on device" in line and str(run) in line
    monkeypatch.setattr(atomic, "_write_fd", real_write)
    snapshot, after = calls["snapshot"], hashes(run)
    # nothing saved before the failure was touched, but for the checkpoints its newest one
    # supersedes: the syncer prunes those once it has made that one durable, failure or not
    assert snapshot and all(snapshot.get(name) == digest for name, digest in after.items())
    newest = max(name.split("/")[1] for name in after if name.startswith("checkpoints/"))
    assert all(name.startswith("checkpoints/") and name.split("/")[1] < newest for name in set(snapshot) - set(after))
    assert not [p for p in run.rglob(".tmp-*")]  # and no temp file or directory left behind
    resumed = invoke("train", "--resume", run, "-q")
    assert resumed.exit_code == 0, resumed.output
    for name in ("weights.safetensors", "history.csv"):
        assert (run / name).read_bytes() == (reference / name).read_bytes()


def test_huge_learning_rate_stops_at_the_first_non_finite_loss(tmp_path):
    config = tmp_path / "diverge.yaml"
    config.write_text(REGRESSION)
    run = tmp_path / "run"
    assert invoke("train", config, "--out", run, "-q", "--set", "fit.epochs=2").exit_code == 0
    checkpoints_before = hashes(run / "checkpoints")
    weights_before = hashes(run)["weights.safetensors"]
    result = invoke("train", "--resume", run, "--force", "--set", "fit.epochs=6",
                    "--set", "optimizer.learning_rate=1e6", "-q")
    line = one_error_line(result)
    match = re.search(r"the loss became (nan|inf|-inf) at epoch (\d+), batch (\d+);.*the last good checkpoint is (\S+)$", line)
    assert match and int(match.group(2)) >= 3, line  # 1-based; epochs 1-2 were the good run
    after = hashes(run / "checkpoints")
    assert all(after[name] == digest for name, digest in checkpoints_before.items() if name in after)
    assert hashes(run)["weights.safetensors"] == weights_before  # the finished run's weights are kept
    from trainctl.runs.rundir import RunDir
    from trainctl.runs.tensors import arrays_from_bytes

    tag, files = RunDir(run).latest_checkpoint()  # verified against its manifest
    assert match.group(4).endswith(tag)
    weights = arrays_from_bytes(files["weights.safetensors"])
    assert all(np.isfinite(w).all() for w in weights.values())
