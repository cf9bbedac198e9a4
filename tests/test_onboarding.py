"""Onboarding through the CLI: --version, shell completion, `trainctl init` (starter configs
that train as written) and `trainctl schema` (the config's JSON Schema, which every shipped
config names on its yaml-language-server line)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

import trainctl
from tests.test_cli import invoke, ok
from tests.test_cli_subprocess import CONSOLE_SCRIPT

ROOT = Path(__file__).resolve().parent.parent
SCHEMA_LINE = "# yaml-language-server: $schema="


def test_version_is_the_package_version():
    result = ok(["--version"])
    assert result.stdout.strip() == f"trainctl {trainctl.__version__}"
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert pyproject["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "trainctl.__version__"}
    from importlib.metadata import version

    assert version("trainctl") == trainctl.__version__


def test_shell_completion_is_offered_and_completes_commands(tmp_path):
    assert "--install-completion" in ok(["--help"]).stdout
    # From a bash parent: typer finds the shell by walking the process's ancestors
    # (shellingham), and the test's own ancestors need not include a shell (a detached
    # `pytest -n 2` run: the workers' chain ends at init). `; exit` keeps bash from exec-ing it.
    shown = subprocess.run(["bash", "-c", '"$0" --show-completion bash; exit $?', str(CONSOLE_SCRIPT)],
                           capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0 and "_TRAINCTL_COMPLETE=complete_bash" in shown.stdout
    env = {**os.environ, "_TRAINCTL_COMPLETE": "complete_bash", "COMP_WORDS": "trainctl tr", "COMP_CWORD": "1"}
    completed = subprocess.run([str(CONSOLE_SCRIPT)], capture_output=True, text=True, env=env, timeout=60)
    assert completed.stdout.split() == ["train"]
    env.update(COMP_WORDS="trainctl init --ta", COMP_CWORD="2")
    assert subprocess.run([str(CONSOLE_SCRIPT)], capture_output=True, text=True, env=env,
                          timeout=60).stdout.split() == ["--task", "--target"]


def _init_and_train(tmp_path, *args):
    path = tmp_path / "starter.yaml"
    result = ok(["init", path, *args])
    assert f"wrote {path}" in result.stderr
    text = path.read_text()
    trained = ok(["train", path, "--out", tmp_path / "run", "-q"])
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    return text, metrics, trained


def test_init_classification_trains_as_written_and_learns(tmp_path):
    text, metrics, _ = _init_and_train(tmp_path)
    assert text.startswith(SCHEMA_LINE) and "# Run:       trainctl train" in text
    assert metrics["val_accuracy"] > 0.9  # 3 spiral arms: chance is 0.33


def test_init_regression_trains_as_written(tmp_path):
    text, metrics, _ = _init_and_train(tmp_path, "--task", "regression")
    assert "loss: mean_squared_error" in text
    assert metrics["val_loss"] < 0.05  # sin(x) has variance 0.5; noise variance 0.0025


def test_init_from_a_csv_reads_width_target_and_classes(tmp_path):
    text, metrics, _ = _init_and_train(tmp_path, "--csv", ROOT / "data" / "iris.csv")
    config = yaml.safe_load(text)
    assert config["model"]["layers"][0]["input_shape"] == [4]
    assert config["model"]["layers"][-1] == {"type": "dense", "units": 3, "activation": "softmax"}
    assert config["data"]["train"]["target"] == "species"
    assert (tmp_path / config["data"]["train"]["csv"]).resolve() == (ROOT / "data" / "iris.csv").resolve()
    assert metrics["val_accuracy"] > 0.8


def test_init_binary_csv_gets_a_sigmoid_output(tmp_path):
    text, metrics, _ = _init_and_train(tmp_path, "--csv", ROOT / "data" / "breast_cancer.csv")
    config = yaml.safe_load(text)
    assert config["loss"] == "binary_crossentropy"
    assert config["model"]["layers"][-1] == {"type": "dense", "units": 1, "activation": "sigmoid"}
    assert "probability of 'malignant'" in text
    assert metrics["val_accuracy"] > 0.9


def test_init_csv_with_a_named_numeric_target_and_a_text_column(tmp_path):
    rows = ["city,rooms,area,price"] + [f"{'ab'[i % 2]},{1 + i % 5},{50 + 3 * (i % 17)},{100 + 20 * (1 + i % 5) + 2 * (50 + 3 * (i % 17)) / 10}"
                                         for i in range(200)]
    (tmp_path / "houses.csv").write_text("\n".join(rows) + "\n")
    text, metrics, _ = _init_and_train(tmp_path, "--csv", tmp_path / "houses.csv", "--target", "price")
    config = yaml.safe_load(text)
    assert config["loss"] == "mean_squared_error"  # a numeric target with many values: regression
    assert config["data"]["train"]["features"] == ["rooms", "area"] and "text columns left out: city" in text
    assert config["model"]["layers"][0]["input_shape"] == [2]
    assert metrics["epochs"] >= 1


def test_init_refuses_to_overwrite_and_names_bad_input(tmp_path):
    (tmp_path / "taken.yaml").write_text("x")
    result = invoke(["init", tmp_path / "taken.yaml"])
    assert result.exit_code == 1 and "already exists; pass --force" in result.stderr
    result = invoke(["init", tmp_path / "a.yaml", "--csv", ROOT / "data" / "iris.csv", "--target", "colour"])
    assert result.exit_code == 1 and "no column 'colour'; the columns are sepal_length" in result.stderr
    result = invoke(["init", tmp_path / "a.yaml", "--csv", ROOT / "data" / "iris.csv", "--task", "regression"])
    assert result.exit_code == 1 and "holds text" in result.stderr
    result = invoke(["init", tmp_path / "a.yaml", "--csv", tmp_path / "missing.csv"])
    assert result.exit_code == 1 and "missing.csv: file not found" in result.stderr
    assert not (tmp_path / "a.yaml").exists()


@pytest.fixture(scope="module")
def validator():
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads(ok(["schema"]).stdout)
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


SHIPPED = sorted((ROOT / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_shipped_configs_name_the_schema_and_satisfy_it(path, validator):
    first = path.read_text().splitlines()[0]
    assert first.startswith(SCHEMA_LINE), f"{path.name}: make its first line {SCHEMA_LINE}../schema/config.schema.json"
    assert (path.parent / first[len(SCHEMA_LINE):]).resolve() == (ROOT / "schema" / "config.schema.json")
    assert [e.message for e in validator.iter_errors(yaml.safe_load(path.read_text()))] == []


def test_committed_schema_file_is_what_trainctl_schema_writes(tmp_path):
    ok(["schema", "--out", tmp_path / "s.json"])
    assert (tmp_path / "s.json").read_text() == (ROOT / "schema" / "config.schema.json").read_text(), \
        "schema/config.schema.json is stale: regenerate it with `trainctl schema --out schema/config.schema.json`"


def test_schema_flags_typos_and_accepts_camel_case(validator):
    config = yaml.safe_load((ROOT / "configs" / "quickstart.yaml").read_text())
    config["model"]["layers"][0]["unts"] = 3
    config["fit"]["epoch"] = 3
    config["loss"] = "categorical_crossentropi"
    errors = {tuple(e.absolute_path) for e in validator.iter_errors(config)}
    assert errors == {("model", "layers", 0), ("fit",), ("loss",)}
    camel = yaml.safe_load((ROOT / "configs" / "quickstart.yaml").read_text())
    camel["model"]["layers"][0] = {"type": "dense", "units": 4, "inputShape": [2], "kernelInitializer": "glorotUniform"}
    camel["fit"] = {"batchSize": 8, "validationSplit": 0.1}
    camel["loss"] = "categoricalCrossentropy"
    camel["optimizer"] = {"type": "adam", "learningRate": 0.01}
    assert list(validator.iter_errors(camel)) == []
    del camel["fit"]["batchSize"]
    camel["data"]["preprocessing"] = ["standardize", {"type": "reshape"}]  # reshape needs target_shape
    assert [tuple(e.absolute_path) for e in validator.iter_errors(camel)] == [("data", "preprocessing", 1)]


def test_config_fit_verbose_chooses_the_display(tmp_path):
    from tests.test_cli import SMALL

    config = tmp_path / "small.yaml"
    config.write_text(SMALL)
    forced = {"FORCE_COLOR": "1", "NO_COLOR": "1"}  # a terminal, where the default is the live bar
    live = ok(["train", config, "--out", tmp_path / "v1"], env=forced).stdout
    assert "Epoch 3/3" in live and "epoch 3/3" not in live
    lines = ok(["train", config, "--out", tmp_path / "v2", "--set", "fit.verbose=2"], env=forced).stdout
    assert "epoch 3/3  loss" in lines and "Epoch 3/3" not in lines  # Keras 2: one line per epoch
    silent = ok(["train", config, "--out", tmp_path / "v0", "--set", "fit.verbose=0"], env=forced).stdout
    assert "Epoch" not in silent and "epoch 1" not in silent and silent.splitlines()[-1] == f"run: {tmp_path / 'v0'}"
    resumed = ok(["train", "--resume", tmp_path / "v0"], env=forced)  # finished: nothing to do, no display
    assert "nothing to resume" in resumed.stderr
