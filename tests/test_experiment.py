"""Experiments: expansion, located validation, dry run, sweeps on a LocalCluster and on a
real `dask scheduler` + `dask worker` cluster, a worker killed mid-sweep, resuming, compare."""

from __future__ import annotations

import csv
import json
import math
import os
import signal
from pathlib import Path

import pytest

from trainctl.errors import ConfigError
from trainctl.experiment.compare import compare_runs
from trainctl.experiment.plan import load_experiment
from trainctl.experiment.runner import run_experiment
from trainctl.experiment.study import load_study_of
from tests.experiment_support import dask_cluster, read_results, tiny_config, write

BASE = tiny_config()


@pytest.fixture
def base(tmp_path: Path) -> Path:
    return write(tmp_path, "tiny.yaml", BASE)


# -- expansion ------------------------------------------------------------------------------


def test_expansion_is_grid_times_draws_times_seeds(tmp_path, base):
    path = write(tmp_path, "sweep.yaml", """\
base: tiny.yaml
grid:
  optimizer.learning_rate: [0.01, 0.03]
  model.layers.0.units: [4, 8, 16]
random:
  count: 2
  seed: 7
  params:
    model.layers.0.activation: {choice: [relu, tanh]}
    optimizer.beta1: {uniform: [0.8, 0.9]}
    optimizer.epsilon: {loguniform: [1.0e-8, 1.0e-6]}
    fit.batch_size: {int: [8, 12]}
seeds: [0, 1, 2]
""")
    experiment = load_experiment(path)
    variants = experiment.variants
    assert experiment.name == "sweep"
    assert len(variants) == 2 * 3 * 2 * 3
    assert len({v.run_id for v in variants}) == len(variants)
    assert len({v.config_hash for v in variants}) == len(variants)
    # seeds vary fastest, then the random draws, then the grid (last key fastest)
    assert [v.seed for v in variants[:6]] == [0, 1, 2, 0, 1, 2]
    grid = [(v.overrides["optimizer.learning_rate"], v.overrides["model.layers.0.units"]) for v in variants]
    assert grid[::6] == [(0.01, 4), (0.01, 8), (0.01, 16), (0.03, 4), (0.03, 8), (0.03, 16)]
    draws = {tuple(sorted((k, v) for k, v in variant.overrides.items() if k.startswith(("fit", "optimizer.b", "optimizer.e", "model.layers.0.a"))))
             for variant in variants}
    assert len(draws) == 2  # the same two draws at every grid point
    for variant in variants:
        o = variant.overrides
        assert o["model.layers.0.activation"] in ("relu", "tanh")
        assert 0.8 <= o["optimizer.beta1"] <= 0.9
        assert 1e-8 <= o["optimizer.epsilon"] <= 1e-6
        assert isinstance(o["fit.batch_size"], int) and 8 <= o["fit.batch_size"] <= 12
        assert f"seed: {variant.seed}\n" in variant.config_yaml
        assert f"units: {o['model.layers.0.units']}" in variant.config_yaml
        assert variant.run_id.endswith(f"-s{variant.seed}")
    assert variants[0].run_id.startswith("00-learning_rate=0.01-units=4-")
    # reproducible: the same file gives the same plan
    assert [v.config_hash for v in load_experiment(path).variants] == [v.config_hash for v in variants]


def test_without_grid_or_seeds_one_run_with_the_base_seed(tmp_path):
    inline = "base:\n" + "".join(f"  {line}\n" for line in BASE.replace("seed: 0", "seed: 5").splitlines())
    path = write(tmp_path, "one.yaml", inline + "metric: val_accuracy\nmode: max\n")
    experiment = load_experiment(path)
    assert [(v.run_id, v.seed, v.overrides) for v in experiment.variants] == [("0-s5", 5, {})]
    assert experiment.base_source == os.fspath(path)


# -- validation -----------------------------------------------------------------------------


def problems_of(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_experiment(path)
    return caught.value.problems


def test_experiment_file_problems_are_located_with_did_you_mean(tmp_path, base):
    path = write(tmp_path, "bad.yaml", """\
base: tiny.yaml
grid:
  optimizer.learning_rate: []
random:
  count: 0
  params:
    fit.epochs: {uniform: [3, 1]}
    fit.batch_size: {int: [8, 12], choice: [1]}
sed: [0, 1]
mode: best
""")
    lines = problems_of(path)
    src = os.fspath(path)
    assert f"{src}:3:28: grid.optimizer.learning_rate: must have at least 1 item, got 0" in lines
    assert f"{src}:5:10: random.count: must be > 0, got 0" in lines
    assert any(line.startswith(f"{src}:7:27: random.params.fit.epochs.uniform:") and "above the upper" in line
               for line in lines)
    assert any(line.startswith(f"{src}:8:21: random.params.fit.batch_size:") and "exactly one" in line
               for line in lines)
    assert f"{src}:9:1: sed: unknown key 'sed'; did you mean 'seeds'?" in lines
    assert any(line.startswith(f"{src}:10:7: mode: must be 'min' or 'max'") for line in lines)


def test_every_failing_variant_is_reported_before_any_run(tmp_path, base):
    path = write(tmp_path, "bad_variants.yaml", """\
base: tiny.yaml
grid:
  optimizer.learning_rate: [0.01, -1, 0.1]
  model.layers.5.units: [4]
random:
  count: 2
  params:
    optimizer.beta_1: {uniform: [0.8, 0.9]}
seeds: [0, 1, 1]
""")
    lines = problems_of(path)
    src = os.fspath(path)
    assert f"{src}:9:15: seeds.2: seed 1 is repeated" in lines
    # the spec's own problems come first; fix the seeds and the variants are checked
    path.write_text(path.read_text().replace("seeds: [0, 1, 1]", "seeds: [0, 1]"))
    lines = problems_of(path)
    assert any(line.startswith(f"{src}:4:3: ") and "index 5 is out of range" in line for line in lines)
    path.write_text(path.read_text().replace("  model.layers.5.units: [4]\n", ""))
    lines = problems_of(path)
    assert lines == [
        f"{src}:3:35: optimizer.learning_rate: must be > 0.0, got -1 (runs 04-learning_rate=-1-beta_1=0.8098-s0, "
        "05-learning_rate=-1-beta_1=0.8098-s1, 06-learning_rate=-1-beta_1=0.8986-s0 and 1 more)",
        f"{src}:7:5: optimizer.beta_1: unknown key 'beta_1'; did you mean 'beta1'? (every run)",
    ]


def test_problems_of_the_base_config_are_located_in_it(tmp_path):
    write(tmp_path, "tiny.yaml", BASE.replace("loss: categorical_crossentropy", "loss: categorical_crosentropy"))
    path = write(tmp_path, "exp.yaml", "base: tiny.yaml\ngrid: {fit.epochs: [1, 2]}\n")
    lines = problems_of(path)
    assert len(lines) == 1
    assert lines[0].startswith(f"{tmp_path / 'tiny.yaml'}:8:7: loss: unknown loss 'categorical_crosentropy'")
    assert lines[0].endswith("(every run)")
    missing = write(tmp_path, "missing.yaml", "base: nothere.yaml\n")
    assert problems_of(missing)[0].startswith(f"{missing}:1:7: base: config file 'nothere.yaml' not found")


def test_the_ranking_metric_must_be_logged(tmp_path, base):
    path = write(tmp_path, "metric.yaml", "base: tiny.yaml\nmetric: val_acuracy\n")
    (line,) = problems_of(path)
    assert "runs will log loss, accuracy, val_loss, val_accuracy; not 'val_acuracy'" in line
    assert "did you mean 'val_accuracy'?" in line


# -- dry run --------------------------------------------------------------------------------


def test_dry_run_lists_the_runs_and_writes_nothing(tmp_path, base):
    path = write(tmp_path, "dry.yaml", "base: tiny.yaml\ngrid: {optimizer.learning_rate: [0.01, 0.02]}\nseeds: [3, 4]\n")
    out = tmp_path / "out"
    result = run_experiment(path, workers=2, scheduler=None, dry_run=True, out=out, progress=None)
    assert result.dry_run
    assert [(r.run_id, r.status, r.seed, r.overrides) for r in result.runs] == [
        ("0-learning_rate=0.01-s3", "planned", 3, {"optimizer.learning_rate": 0.01}),
        ("1-learning_rate=0.01-s4", "planned", 4, {"optimizer.learning_rate": 0.01}),
        ("2-learning_rate=0.02-s3", "planned", 3, {"optimizer.learning_rate": 0.02}),
        ("3-learning_rate=0.02-s4", "planned", 4, {"optimizer.learning_rate": 0.02}),
    ]
    assert [r.path for r in result.runs] == [out.absolute() / "runs" / r.run_id for r in result.runs]
    assert not out.exists()


# -- sweeps ---------------------------------------------------------------------------------

SWEEP = """\
base: tiny.yaml
grid:
  optimizer.learning_rate: [0.01, 0.05]
  data.train:
    - {generator: teacher, n_samples: 240, n_features: 6, n_classes: 3, hidden: 6}
    - {csv: missing.csv, target: label}
seeds: [0, 1]
metric: val_loss
"""


def check_sweep(result, directory: Path) -> None:
    """4 runs train, the 4 reading a missing CSV fail with their error; files are consistent."""
    by_status = {status: [r for r in result.runs if r.status == status] for status in ("ok", "failed")}
    assert len(by_status["ok"]) == 4 and len(by_status["failed"]) == 4
    for run in by_status["failed"]:
        assert "missing.csv: no such file" in run.error
        assert run.overrides["data.train"]["csv"] == "missing.csv"
    for run in by_status["ok"]:
        assert (run.path / "metrics.json").is_file() and run.path.parent == directory / "runs"
        history = list(csv.DictReader(open(run.path / "history.csv")))
        assert len(history) == 2 == run.epochs
        assert run.final == pytest.approx(float(history[-1]["val_loss"]))
        assert run.best == pytest.approx(min(float(row["val_loss"]) for row in history))
        assert run.wall_seconds > 0
    rows = read_results(directory)
    assert [row["run_id"] for row in rows] == [r.run_id for r in result.runs]
    assert list(rows[0]) [:5] == ["run_id", "status", "optimizer.learning_rate", "data.train", "seed"]
    for row, run in zip(rows, result.runs):
        assert row["status"] == run.status
        assert json.loads(row["data.train"]) == run.overrides["data.train"]
        if run.status == "ok":
            assert float(row["final_val_loss"]) == run.final
    plan = json.loads((directory / "experiment.json").read_text())
    assert [item["config_hash"] for item in plan["runs"]] == [r.config_hash for r in result.runs]
    assert result.best is min(by_status["ok"], key=lambda r: r.final)


@pytest.mark.slow
def test_sweep_on_a_local_cluster_then_a_rerun_skips_complete_runs(tmp_path, base):
    path = write(tmp_path, "sweep.yaml", SWEEP)
    directory = tmp_path / "exp"
    snapshots = []
    result = run_experiment(path, workers=2, scheduler=None, dry_run=False, out=directory,
                            progress=snapshots.append)
    check_sweep(result, directory)
    last = snapshots[-1]
    assert (last.total, last.done, last.failed, last.running, last.queued) == (8, 4, 4, 0, 0)
    assert last.best.final == result.best.final
    assert max(s.running for s in snapshots) <= 2
    assert [s.done + s.failed for s in snapshots if s.last] == list(range(1, 9))

    # the table: one row per configuration, mean ± std over the seeds, failures counted
    rows, columns = result.comparison().table(lambda values: f"{sum(values) / len(values):.6f}/{len(values)}")
    assert columns == ["learning_rate", "train", "seeds", "val_loss", "best val_loss", "train s", "runs"]
    assert [row["runs"] for row in rows] == ["2", "0/2", "2", "0/2"]
    assert [row["seeds"] for row in rows] == ["0,1"] * 4
    ok = [r for r in result.runs if r.status == "ok"]
    assert rows[0]["val_loss"] == f"{(ok[0].final + ok[1].final) / 2:.6f}/2"
    # the same machinery as a search: each run a trial of the study in the experiment directory,
    # its values fixed (scalar ones as params; data.train's mappings live in experiment.json)
    trials = load_study_of(directory).get_trials(deepcopy=False)
    by_state = {state: {t.user_attrs["run_id"]: t for t in trials if t.state.name == state} for state in ("COMPLETE", "FAIL")}
    assert {run_id: t.value for run_id, t in by_state["COMPLETE"].items()} == {r.run_id: r.final for r in ok}
    assert set(by_state["FAIL"]) == {r.run_id for r in result.runs if r.status == "failed"}
    for run in result.runs:
        trial = {**by_state["COMPLETE"], **by_state["FAIL"]}[run.run_id]
        assert trial.params == {"optimizer.learning_rate": run.overrides["optimizer.learning_rate"], "seed": run.seed}
    assert rows[1]["val_loss"] is None
    # compare reads the same numbers back from the directories
    again = compare_runs([directory])
    assert again.table(str)[0] == result.comparison().table(str)[0]
    assert again.best.path == result.best.path

    # rerun: the complete runs are skipped, an interrupted one (no metrics.json) reruns
    interrupted = ok[0].path
    (interrupted / "metrics.json").unlink()
    stamps = {r.run_id: (r.path / "metrics.json").stat().st_mtime_ns for r in ok[1:]}
    rerun = run_experiment(path, workers=2, scheduler=None, dry_run=False, out=directory, progress=None)
    statuses = {r.run_id: r.status for r in rerun.runs}
    assert statuses[ok[0].run_id] == "ok"
    assert [statuses[r.run_id] for r in ok[1:]] == ["skipped"] * 3
    assert sum(s == "failed" for s in statuses.values()) == 4  # failed runs are tried again
    assert {r.run_id: (r.path / "metrics.json").stat().st_mtime_ns for r in ok[1:]} == stamps
    assert (interrupted / "metrics.json").is_file()
    by_id = {r.run_id: r for r in rerun.runs}
    for run in ok:  # same seeds, same data: the rerun reproduces the numbers
        assert by_id[run.run_id].final == run.final
    assert [row["status"] for row in read_results(directory)] == [r.status for r in rerun.runs]
    dry = run_experiment(path, workers=1, scheduler=None, dry_run=True, out=directory, progress=None)
    assert sum(r.status == "skipped" for r in dry.runs) == 4


@pytest.mark.slow
def test_the_same_sweep_on_a_dask_scheduler_and_two_dask_workers(tmp_path, base):
    from distributed import Client

    with dask_cluster(tmp_path, n_workers=2) as (address, _):
        with Client(address, timeout="30s") as client:
            workers = set(client.scheduler_info()["workers"])
        directory = tmp_path / "exp"
        result = run_experiment(write(tmp_path, "sweep.yaml", SWEEP), workers=1, scheduler=address,
                                dry_run=False, out=directory, progress=None)
        check_sweep(result, directory)
        with Client(address, timeout="30s") as client:  # the cluster outlives the experiment
            assert set(client.scheduler_info()["workers"]) == workers


@pytest.mark.slow
def test_a_worker_killed_mid_sweep_and_the_experiment_still_completes(tmp_path, base):
    import psutil

    write(tmp_path, "tiny.yaml", tiny_config(n_samples=4000, epochs=3))
    path = write(tmp_path, "kill.yaml", "base: tiny.yaml\n"
                 "grid: {optimizer.learning_rate: [0.01, 0.02, 0.03, 0.04, 0.05, 0.06]}\nseeds: [0, 1]\n")
    killed = {}

    def progress(snapshot):
        if killed or snapshot.done < 1 or snapshot.running < 1:
            return
        workers = [p for p in psutil.Process().children(recursive=True)
                   if any("spawn_main" in part for part in p.cmdline())]
        assert workers, "no spawned worker processes found"
        os.kill(workers[0].pid, signal.SIGKILL)
        killed.update(pid=workers[0].pid, done=snapshot.done, total=snapshot.total)

    result = run_experiment(path, workers=2, scheduler=None, dry_run=False, out=tmp_path / "exp",
                            progress=progress)
    assert killed and killed["done"] < killed["total"]
    assert not psutil.pid_exists(killed["pid"]) or psutil.Process(killed["pid"]).status() == psutil.STATUS_ZOMBIE
    assert [r.status for r in result.runs] == ["ok"] * 12, [r.error for r in result.runs]
    assert all(math.isfinite(r.final) for r in result.runs)


# -- compare --------------------------------------------------------------------------------


@pytest.mark.slow
def test_compare_plain_run_directories_finds_the_differing_keys(tmp_path, base):
    path = write(tmp_path, "c.yaml", "base: tiny.yaml\ngrid: {model.layers.0.units: [4, 8]}\nseeds: [0, 1]\n"
                 "metric: val_accuracy\nmode: max\n")
    result = run_experiment(path, workers=1, scheduler=None, dry_run=False, out=tmp_path / "exp", progress=None)
    assert [r.status for r in result.runs] == ["ok"] * 4
    runs = [r.path for r in result.runs]
    comparison = compare_runs(runs)
    assert comparison.keys == ["model.layers.0.units"]
    assert comparison.metric == "val_loss" and comparison.mode == "min"
    rows, columns = comparison.table(lambda values: len(values))
    assert columns[:2] == ["units", "seeds"]
    assert [(row["units"], row["seeds"], row["val_loss"]) for row in rows] == [("4", "0,1", 2), ("8", "0,1", 2)]
    best = compare_runs(runs, metric="val_accuracy", mode="max").best
    assert best.final == max(r.final for r in result.runs)
    assert best.path == result.best.path
    with pytest.raises(Exception, match="neither a run directory"):
        compare_runs([tmp_path])


def _finished_run(path, accuracies, seed):
    from trainctl.runs.rundir import RunDir

    run = RunDir(path)
    path.mkdir(parents=True)
    run.write_config(f"name: r\nseed: {seed}\n")
    for epoch, accuracy in enumerate(accuracies, start=1):
        run.append_history({"epoch": epoch, "loss": 1.0 - accuracy, "val_accuracy": accuracy})
    run.write_state({"completed": True})
    run.write_metrics({"val_accuracy": accuracies[-1], "epochs": len(accuracies)})
    return path


def test_compare_ranks_accuracy_highest_first(tmp_path):
    # Issue 9: without --mode, compare ranked val_accuracy lowest-first and called the worst
    # run best. The direction now comes from the one Monitor rule (accuracy is maximised).
    worse = _finished_run(tmp_path / "worse", [0.5, 0.6, 0.55], seed=1)
    better = _finished_run(tmp_path / "better", [0.7, 0.9, 0.8], seed=2)
    comparison = compare_runs([worse, better], metric="val_accuracy")
    assert comparison.mode == "max"
    assert comparison.best.path == better
    by_name = {run.run_id: run for run in comparison.runs}
    assert (by_name["better"].best, by_name["better"].best_epoch) == (0.9, 2)
    assert (by_name["worse"].best, by_name["worse"].best_epoch) == (0.6, 2)
    assert compare_runs([worse, better], metric="val_accuracy", mode="min").best.path == worse
    assert compare_runs([worse, better], metric="loss").best.path == better  # a loss is minimised
