"""Issue 15, items 5-7 and 10: writes stay inside the run directory, one process writes a run
directory at a time, --resume without checkpoints says so, and every config error is
located. Each case is the real CLI in a subprocess; victim files are hashed before and after."""

from __future__ import annotations

import os
import shutil
import signal
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.kill_points import start_held
from tests.test_hostile.common import BASE, ENV, cli, sha256, write

LOC = r"cfg\.yaml:\d+:\d+: "
SLOW = BASE.replace("n_samples: 64", "n_samples: 20000").replace("epochs: 1", "epochs: 40")


def test_callback_files_cannot_reach_outside_the_run_directory(tmp_path):
    import re

    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    before = sha256(victim)
    (tmp_path / "elsewhere").mkdir()
    cases = {
        "absolute": (str(victim), LOC + r"callbacks\.0: csv_logger writes .*: a callback writes inside the run directory"),
        "dotdot": ("../../victim.txt", LOC + r"callbacks\.0: csv_logger writes .*: a callback writes inside the run directory"),
    }
    jobs = []
    for name, (filename, pattern) in cases.items():
        root = tmp_path / name
        root.mkdir()
        config = write(root, "cfg.yaml", BASE + f"callbacks: [{{type: csv_logger, filename: '{filename}'}}]\n")
        jobs += [(name, ("validate", config), pattern), (name, ("train", config, "-q", "--out", root / "run"), pattern)]
    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(lambda job: (job, cli(*job[1])), jobs))
    for (name, args, pattern), result in results:
        line = result.clean_error()
        assert re.search(pattern, line), (name, line)
    assert sha256(victim) == before
    assert not any((tmp_path / name / "run").exists() for name in cases)


def test_a_symlink_inside_the_run_directory_is_resolved_before_writing(tmp_path):
    """A run directory prepared with a link named like the log: refused, the target untouched."""
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    before = sha256(victim)
    out = tmp_path / "run"
    out.mkdir()
    config = write(tmp_path, "cfg.yaml", BASE + "callbacks: [{type: csv_logger, filename: logs/log.csv}]\n")
    # --out must be empty, so the link is planted by a resume: a finished-looking run with a link
    done = cli("train", config, "-q", "--out", out)
    assert done.code == 0, done.stderr
    shutil.rmtree(out / "logs")
    os.symlink(tmp_path, out / "logs")
    (out / "state.json").write_text('{"completed": false}')
    line = cli("train", "--resume", out, "--force", "-q").clean_error()
    assert "leads outside the run directory" in line, line
    assert sha256(victim) == before and not (tmp_path / "log.csv").exists()


def test_predict_output_is_written_atomically_and_never_through_a_failed_run(tmp_path):
    config = write(tmp_path, "cfg.yaml", BASE)
    assert cli("train", config, "-q", "--out", tmp_path / "run").code == 0
    import numpy as np

    np.save(tmp_path / "x.npy", np.zeros((5, 4), np.float32))
    np.save(tmp_path / "bad.npy", np.zeros((5, 7), np.float32))
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    link = tmp_path / "out.csv"
    os.symlink(victim, link)
    before = sha256(victim)
    failed = cli("predict", tmp_path / "run", "--input", tmp_path / "bad.npy", "--output", link)
    assert "expects [n,4]" in failed.clean_error()
    assert sha256(victim) == before and link.is_symlink()  # a failed predict touches nothing
    done = cli("predict", tmp_path / "run", "--input", tmp_path / "x.npy", "--output", link)
    assert done.code == 0, done.stderr
    assert sha256(victim) == before  # the link was replaced (rename), its target never truncated
    assert not link.is_symlink() and link.read_text().startswith("class,")


def test_two_processes_on_one_run_directory_the_second_is_refused_with_the_pid(tmp_path):
    config = write(tmp_path, "cfg.yaml", SLOW)
    out = tmp_path / "run"
    go = tmp_path / "go"
    # the first waits inside its first checkpoint (alive, the run directory locked) until `go`
    first = start_held(["train", os.fspath(config), "-q", "--out", os.fspath(out), "--threads", "1"], go,
                       {**os.environ, **ENV})
    second_train = cli("train", config, "-q", "--out", out)
    assert second_train.clean_error() == f"error: {out} is being written by process {first.pid}; wait for it " \
                                         "to finish (or use another --out)"
    second_resume = cli("train", "--resume", out, "-q")
    assert f"is being written by process {first.pid}" in second_resume.clean_error()
    first.send_signal(signal.SIGINT)  # the first finishes its work (a checkpoint) undisturbed
    go.touch()
    _, stderr = first.communicate(timeout=120)
    assert first.returncode == 130 and "Traceback" not in stderr, stderr
    # the first's results are intact: its resume completes and matches an uninterrupted run
    resumed = cli("train", "--resume", out, "-q", "--set", "fit.epochs=2", "--force", timeout=300)
    assert resumed.code == 0, resumed.stderr
    assert (out / "weights.safetensors").is_file() and (out / "metrics.json").is_file()


def test_resume_without_checkpoints_says_so_and_force_restarts(tmp_path):
    config = write(tmp_path, "cfg.yaml", BASE.replace("epochs: 1", "epochs: 3"))
    out = tmp_path / "run"
    reference = tmp_path / "reference"
    with ThreadPoolExecutor(2) as pool:
        done = list(pool.map(lambda o: cli("train", config, "-q", "--out", o), [out, reference]))
    assert all(d.code == 0 for d in done), [d.stderr for d in done]
    (out / "state.json").write_text('{"completed": false}')  # as if killed in the last epoch
    shutil.rmtree(out / "checkpoints")
    line = cli("train", "--resume", out, "-q").clean_error()
    assert line == (f"error: {out}: nothing to resume from: checkpoints/ holds no checkpoint, but 3 epochs "
                    "were trained; pass --force to restart the run from the beginning"), line
    restarted = cli("train", "--resume", out, "-q", "--force")
    assert restarted.code == 0, restarted.stderr
    assert sha256(out / "weights.safetensors") == sha256(reference / "weights.safetensors")
    assert (out / "history.csv").read_bytes() == (reference / "history.csv").read_bytes()


ERRORS = [
    ("monitor typo", BASE + "callbacks: [{type: early_stopping, monitor: val_los}]\n",
     LOC + r"callbacks\.early_stopping\.monitor: 'val_los' is not logged; available: loss, accuracy, val_loss, val_accuracy"),
    ("both spellings", BASE.replace("batch_size: 16", "batch_size: 16, batchSize: 8"),
     LOC + r"fit\.batch_size: 'batchSize' and 'batch_size' are two spellings of one key; give it once"),
    ("input_shape vs data", BASE.replace("input_shape: [4]", "input_shape: [5]"),
     LOC + r"model\.layers\.0\.input_shape: the data \(generator teacher\) has inputs of shape \[n,4\] but the "
           r"model expects \[n,5\]"),
]


@pytest.mark.parametrize("command", ["validate", "train"])
def test_errors_carry_their_place(tmp_path, command):
    import re

    jobs = []
    for name, text, pattern in ERRORS:
        root = tmp_path / name.replace(" ", "_")
        root.mkdir()
        args = [command, write(root, "cfg.yaml", text)] + (["-q", "--out", root / "run"] if command == "train" else [])
        jobs.append((name, args, pattern))
    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(lambda job: (job, cli(*job[1])), jobs))
    for (name, _, pattern), result in results:
        line = result.clean_error()
        assert re.search(pattern, line), (name, line)
