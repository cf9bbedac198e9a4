"""Adaptive search (Optuna on dask): a study runs, prunes bad trials, survives a killed client
and continues to exactly n_trials, and compare/plot read it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from trainctl.errors import ConfigError
from trainctl.experiment.compare import compare_runs
from trainctl.experiment.plan import load_experiment
from trainctl.experiment.runner import run_experiment
from tests.experiment_support import dask_cluster, read_results, tiny_config, trials_in, write

BASE = tiny_config(n_samples=600, epochs=6)


def test_search_with_grid_is_a_located_error(tmp_path):
    write(tmp_path, "tiny.yaml", BASE)
    path = write(tmp_path, "bad.yaml", "base: tiny.yaml\ngrid: {optimizer.learning_rate: [0.1]}\n"
                 "search: {n_trials: 3, params: {optimizer.learning_rate: {loguniform: [0.001, 0.1]}}}\n")
    with pytest.raises(ConfigError, match=r"bad.yaml:2:1: grid: search picks every trial"):
        load_experiment(path)


@pytest.mark.slow
def test_median_pruning_stops_bad_trials_early_and_keeps_the_best(tmp_path):
    write(tmp_path, "tiny.yaml", BASE)
    space = "{optimizer.learning_rate: {choice: [0.02, 0.03, 0.04, 0.05, 0.0000001, 0.0000002]}}"
    results = {}
    for pruner in ("median", "none"):
        path = write(tmp_path, f"{pruner}.yaml", f"name: {pruner}\nbase: tiny.yaml\nmetric: val_loss\n"
                     f"search: {{sampler: grid, n_trials: 6, pruner: {pruner}, seed: 0, params: {space}}}\n")
        directory = tmp_path / pruner
        results[pruner] = (run_experiment(path, workers=1, out=directory), directory)
    pruned_result, pruned_dir = results["median"]
    full_result, _ = results["none"]
    states = trials_in(pruned_dir)
    assert len(states) == 6 and set(states.values()) <= {"COMPLETE", "PRUNED"}
    by_rate = {run.overrides["optimizer.learning_rate"]: run for run in pruned_result.runs}
    pruned = [run for run in pruned_result.runs if run.status == "pruned"]
    assert pruned, "no trial was pruned"
    bad_after_startup = [run for run in pruned_result.runs  # the median needs 3 finished trials first
                         if run.overrides["optimizer.learning_rate"] < 1e-6 and run.index >= 3]
    assert all(run.status == "pruned" and run.epochs == 1 for run in bad_after_startup)  # stopped after epoch 1
    assert all(run.epochs < 6 for run in pruned)
    assert sum(run.epochs for run in pruned_result.runs) < sum(run.epochs for run in full_result.runs)
    assert pruned_result.best.overrides == full_result.best.overrides
    assert pruned_result.best.final == pytest.approx(full_result.best.final, rel=1e-12)
    for run in pruned:
        assert json.loads((run.path / "trial.json").read_text())["state"] == "pruned"
    assert by_rate  # every trial has a run
    # compare: pruned apart (no ranking value, a state column), best first
    comparison = compare_runs([pruned_dir])
    rows, columns = comparison.table(lambda values: f"{values[0]:.4g}" if values else None)
    assert "state" in columns and "seeds" in columns
    assert [row.get("state") for row in rows if row.get("state")] == ["pruned"] * len(pruned)
    assert all(row["val_loss"] is None for row in rows if row.get("state"))


@pytest.mark.slow
def test_ctrl_c_then_a_killed_client_resume_to_exactly_n_trials(tmp_path):
    # trials long enough (3000 samples x 6 epochs) that the kill lands mid-study on a quiet machine
    write(tmp_path, "tiny.yaml", tiny_config(n_samples=3000, epochs=6))
    path = write(tmp_path, "study.yaml", "name: study\nbase: tiny.yaml\nsearch: {sampler: tpe, n_trials: 5, seed: 3, "
                 "params: {optimizer.learning_rate: {loguniform: [0.001, 0.1]}, model.layers.0.units: {int: [4, 16]}}}\n")
    directory = tmp_path / "out"
    command = [sys.executable, "-m", "trainctl", "experiment", os.fspath(path), "--workers", "1",
               "--out", os.fspath(directory)]

    def started_until(complete: int) -> subprocess.Popen:
        """The command, running until the study holds `complete` finished trials."""
        # SIGINT as a terminal leaves it: a pytest started in the background ignores SIGINT, and
        # its children would inherit that
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                   start_new_session=True,
                                   preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and process.poll() is None:
            if list(trials_in(directory).values()).count("COMPLETE") >= complete:
                break
            time.sleep(0.05)
        assert process.poll() is None, "the study finished before it could be stopped"
        return process

    # Ctrl-C in a terminal: SIGINT to the whole process group, the client and its dask workers
    process = started_until(1)
    os.killpg(process.pid, signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 1
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr
    assert stderr.strip().splitlines()[-1].endswith("trials done; run the same command again to resume"), stderr
    stopped = list(trials_in(directory).values()).count("COMPLETE")
    assert 1 <= stopped < 5
    # SIGKILL of the client (and its workers) mid-study
    process = started_until(stopped + 1)
    os.killpg(process.pid, signal.SIGKILL)
    process.communicate()
    before = trials_in(directory)
    assert 1 <= list(before.values()).count("COMPLETE") < 5
    rerun = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    after = trials_in(directory)
    finished = [n for n, state in after.items() if state in ("COMPLETE", "PRUNED")]
    assert len(finished) == 5
    for number, state in before.items():
        if state == "COMPLETE":
            assert after[number] == "COMPLETE"  # kept, not rerun
    run_dirs = sorted(p.name for p in (directory / "runs").iterdir())
    assert len(run_dirs) == len(set(run_dirs))
    assert {f"trial-{n:04d}" for n in finished} <= set(run_dirs)
    rows = read_results(directory)
    assert sum(row["status"] in ("ok", "skipped") for row in rows) == 5
    plotted = subprocess.run([sys.executable, "-m", "trainctl", "plot", os.fspath(directory)],
                             capture_output=True, text=True, timeout=120)
    assert plotted.returncode == 0, plotted.stderr
    for name in ("curves", "history", "parallel"):
        assert (directory / "plots" / f"{name}.png").stat().st_size > 1000


@pytest.mark.slow
def test_a_study_on_a_dask_scheduler_with_two_workers_and_one_killed(tmp_path):
    """A real `dask scheduler` and two `dask worker` processes on 127.0.0.1 run the trials in
    parallel; one worker is killed mid-study and the study still ends with n_trials finished."""
    write(tmp_path, "tiny.yaml", tiny_config(n_samples=3000, epochs=6))
    path = write(tmp_path, "study.yaml", "name: remote\nbase: tiny.yaml\nsearch: {sampler: random, n_trials: 6, seed: 1, "
                 "params: {optimizer.learning_rate: {loguniform: [0.003, 0.03]}}}\n")
    with dask_cluster(tmp_path, n_workers=2) as (address, workers):
        import threading

        def kill_one_worker_once_a_trial_runs():
            deadline = time.monotonic() + 180
            while time.monotonic() < deadline:
                # as soon as the study has a trial under way (a worker's first trial also loads
                # the kernel cache: seconds), so the kill lands before the study can end
                if (tmp_path / "out" / "study.journal").is_file() and \
                        {"RUNNING", "COMPLETE"} & set(trials_in(tmp_path / "out").values()):
                    os.killpg(workers[0].pid, signal.SIGKILL)
                    return
                time.sleep(0.02)

        killer = threading.Thread(target=kill_one_worker_once_a_trial_runs, daemon=True)
        killer.start()
        result = run_experiment(path, workers=1, scheduler=address, out=tmp_path / "out")
        killer.join(timeout=5)
        states = trials_in(tmp_path / "out")
        assert list(states.values()).count("COMPLETE") == 6
        assert set(states.values()) <= {"COMPLETE", "FAIL"}  # a trial on the killed worker failed or was retried
        assert workers[0].poll() is not None  # the kill happened
        assert sum(run.status in ("ok", "skipped") for run in result.runs) == 6

