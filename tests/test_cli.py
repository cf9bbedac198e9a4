"""The `trainctl` commands through typer's CliRunner (in-process): train, summary, validate,
predict, evaluate, plot; the run directory they write; the display (plain lines, jsonl,
NO_COLOR); and exact located messages for a table of bad configs.

Real subprocesses of the console script and `python -m trainctl` are in
tests/test_cli_subprocess.py.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from trainctl.cli import app
from tests.fixtures import metrics_table, table_rows, teacher_config  # noqa: F401 (table_rows: re-exported)

ROOT = Path(__file__).resolve().parent.parent
TFJS_MLP = ROOT / "configs" / "tfjs_mlp.yaml"

# A tiny classifier on generated data: trains in well under a second once kernels are cached.
# Line numbers matter: the bad-config table below points into this text.
SMALL = teacher_config(header="# trainctl CLI test config: a tiny classifier on generated data.", n_features=6,
                       n_samples=300, fit="\n  epochs: 3\n  batch_size: 32\n  validation_split: 0.2")
EPOCHS = 3

# The environment a non-terminal run sees: no colour forcing from the outside.
PLAIN_ENV = {"FORCE_COLOR": None, "TTY_COMPATIBLE": None, "NO_COLOR": None, "TTY_INTERACTIVE": None,
             "COLUMNS": "120"}
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
COLOR_SGR = re.compile(r"\x1b\[((?:\d+;)*(?:3[0-9]|4[0-9]|9[0-7]|10[0-7])(?:;\d+)*)m")


def invoke(args, env=None):
    runner = CliRunner()
    return runner.invoke(app, [str(a) for a in args], env={**PLAIN_ENV, **(env or {})})


def ok(args, env=None):
    result = invoke(args, env)
    assert result.exit_code == 0, (result.exit_code, result.stdout, result.stderr, result.exception)
    return result


def fails(args, env=None):
    """An expected failure: exit 1, one red `error: ...` line per problem, no traceback."""
    result = invoke(args, env)
    assert result.exit_code == 1, (result.exit_code, result.stdout, result.stderr, result.exception)
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    assert result.stderr.strip(), "an expected failure says why on stderr"
    return result


def error_lines(result) -> list[str]:
    return result.stderr.rstrip("\n").split("\n")


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def small_config(tmp_path: Path, old: str | None = None, new: str = "", name: str = "small.yaml") -> Path:
    text = SMALL
    if old is not None:
        assert old in SMALL, old
        text = SMALL.replace(old, new)
    return write(tmp_path / name, text)


# ---------------------------------------------------------------------- forward reference

def _activation(name: str, z: np.ndarray) -> np.ndarray:
    if name in (None, "linear"):
        return z
    if name == "relu":
        return np.maximum(z, 0)
    if name == "sigmoid":
        return 1 / (1 + np.exp(-z))
    if name == "tanh":
        return np.tanh(z)
    if name == "softmax":
        e = np.exp(z - z.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)
    raise AssertionError(f"no reference for activation {name!r}")


def numpy_forward(run_dir: Path, x: np.ndarray) -> np.ndarray:
    """The model of a run directory applied by hand: model.json layers over the saved weights."""
    from safetensors.numpy import load_file

    architecture = json.loads((run_dir / "model.json").read_text())
    weights = load_file(str(run_dir / "weights.safetensors"))
    a = x.astype(np.float64)
    for layer in architecture["layers"]:
        assert layer["type"] == "dense", layer
        a = a @ weights[f"{layer['name']}/kernel"].astype(np.float64)
        if layer.get("use_bias", True):
            a = a + weights[f"{layer['name']}/bias"].astype(np.float64)
        a = _activation(layer.get("activation"), a)
    return a


# ---------------------------------------------------------------------- one trained run

@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cli")


@pytest.fixture(scope="module")
def config_path(workdir) -> Path:
    return write(workdir / "small.yaml", SMALL)


@pytest.fixture(scope="module")
def trained(workdir, config_path):
    """(run directory, CliRunner result) of one plain (non-terminal) training run."""
    run_dir = workdir / "run"
    result = ok(["train", config_path, "--out", run_dir])
    return run_dir, result


@pytest.fixture(scope="module")
def inputs(workdir) -> np.ndarray:
    return np.random.default_rng(7).normal(size=(9, 6)).astype(np.float32)


# ---------------------------------------------------------------------- train

def test_train_plain_output_is_one_line_per_epoch_then_summary_and_path(trained):
    run_dir, result = trained
    lines = result.stdout.rstrip("\n").split("\n")
    assert not ANSI.search(result.stdout), "non-terminal output has no escape codes"
    epoch_lines = [line for line in lines if line.startswith("epoch ")]
    assert [line.split()[1] for line in epoch_lines] == [f"{i}/{EPOCHS}" for i in range(1, EPOCHS + 1)]
    for line in epoch_lines:
        assert re.search(r"\bloss \d+\.\d{4}\b.*\baccuracy \d\.\d{4}\b.*\bval_loss \d+\.\d{4}\b"
                         r".*\bval_accuracy \d\.\d{4}\b", line), line
    # Nothing else but the (optional) compile notice, the summary line and the run's path.
    others = [line for line in lines if not line.startswith("epoch ")]
    assert others[-2].startswith(f"trained {EPOCHS} epochs in "), others
    assert "loss " in others[-2] and "val_accuracy " in others[-2]
    assert others[-1] == f"run: {run_dir}"
    assert set(others[:-2]) <= {"compiling kernels…"}, others
    assert lines[-2:] == others[-2:], "the summary line and the path end the output"


def test_run_directory_contents(trained, config_path):
    from safetensors.numpy import load_file

    from trainctl.config import load_config

    run_dir, _ = trained
    for name in ("config.yaml", "model.json", "weights.safetensors", "optimizer.safetensors",
                 "history.csv", "metrics.json"):
        assert (run_dir / name).is_file(), name
    assert not [p.name for p in run_dir.iterdir() if p.name.startswith(".") or p.suffix == ".tmp"], \
        "no temporary files left behind"
    assert load_config(run_dir / "config.yaml").config == load_config(config_path).config
    architecture = json.loads((run_dir / "model.json").read_text())
    assert [layer["name"] for layer in architecture["layers"]] == ["dense_Dense1", "dense_Dense2"]
    weights = load_file(str(run_dir / "weights.safetensors"))
    assert {name: list(w.shape) for name, w in weights.items()} == {
        "dense_Dense1/kernel": [6, 8], "dense_Dense1/bias": [8],
        "dense_Dense2/kernel": [8, 3], "dense_Dense2/bias": [3]}
    assert all(w.dtype == np.float32 for w in weights.values())
    assert load_file(str(run_dir / "optimizer.safetensors")), "adam has slots to save"
    with open(run_dir / "history.csv", newline="") as f:
        history = list(csv.DictReader(f))
    assert [int(row["epoch"]) for row in history] == list(range(1, EPOCHS + 1))
    assert {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(history[0])
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["epochs"] == EPOCHS
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        assert metrics[key] == pytest.approx(float(history[-1][key]), rel=1e-6), key


def test_train_jsonl_prints_only_json_one_event_per_epoch(workdir, config_path):
    run_dir = workdir / "jsonl"
    result = ok(["train", config_path, "--out", run_dir, "--log-format", "jsonl"])
    lines = result.stdout.rstrip("\n").split("\n")
    events = [json.loads(line) for line in lines]  # every line is JSON
    epochs = [e for e in events if e.get("event") == "epoch_end"]
    assert [e["epoch"] for e in epochs] == list(range(1, EPOCHS + 1))
    assert all(e["epochs"] == EPOCHS and "loss" in e and "val_accuracy" in e for e in epochs)
    assert len(events) - len(epochs) <= 1 and events[-1]["event"] in ("epoch_end", "train_end")
    history = list(csv.DictReader(open(run_dir / "history.csv", newline="")))
    assert [e["loss"] for e in epochs] == pytest.approx([float(r["loss"]) for r in history], rel=1e-9)


def test_train_quiet_prints_only_summary_and_path(workdir, config_path):
    run_dir = workdir / "quiet"
    result = ok(["train", config_path, "--out", run_dir, "--quiet"])
    lines = result.stdout.rstrip("\n").split("\n")
    assert len(lines) == 2, lines
    assert lines[0].startswith(f"trained {EPOCHS} epochs in ") and lines[1] == f"run: {run_dir}"


def test_train_set_and_seed_reach_the_saved_config_and_the_weights(workdir, config_path, trained):
    from safetensors.numpy import load_file

    from trainctl.config import load_config

    base, _ = trained
    same = workdir / "same-seed"
    ok(["train", config_path, "--out", same, "--quiet"])
    a = load_file(str(base / "weights.safetensors"))
    b = load_file(str(same / "weights.safetensors"))
    assert all(np.array_equal(a[k], b[k]) for k in a), "same config and seed: identical weights"

    other = workdir / "seed5"
    ok(["train", config_path, "--out", other, "--quiet", "--seed", "5",
        "--set", "fit.epochs=2", "--set", "model.layers.0.units=5"])
    saved = load_config(other / "config.yaml").config
    assert saved.seed == 5 and saved.fit.epochs == 2 and saved.model.layers[0].params.units == 5
    assert len(list(csv.DictReader(open(other / "history.csv", newline="")))) == 2
    assert load_file(str(other / "weights.safetensors"))["dense_Dense1/kernel"].shape == (6, 5)

    seed5 = workdir / "seed5-only"
    ok(["train", config_path, "--out", seed5, "--quiet", "--seed", "5"])
    c = load_file(str(seed5 / "weights.safetensors"))
    assert not np.array_equal(a["dense_Dense1/kernel"], c["dense_Dense1/kernel"]), "--seed changes the run"


def test_train_print_config_prints_resolved_yaml_and_trains_nothing(workdir, config_path):
    from trainctl.config import load_config_text

    out = workdir / "never"
    result = ok(["train", config_path, "--print-config", "--out", out, "--set", "fit.batch_size=16"])
    config = load_config_text(result.stdout, "printed").config
    assert config.fit.batch_size == 16 and config.name == "small"
    assert not out.exists()


def test_train_init_from_run_dir_and_safetensors_file(workdir, config_path, trained):
    """Starting from the trained weights, the first epoch's loss is near the run's last,
    far below a fresh start's first epoch."""
    base, _ = trained
    fresh = [float(r["loss"]) for r in csv.DictReader(open(base / "history.csv", newline=""))]
    for source in (base, base / "weights.safetensors"):
        out = workdir / f"init-{source.name}"
        ok(["train", config_path, "--out", out, "--quiet", "--init-from", source, "--set", "fit.epochs=1"])
        first = float(next(csv.DictReader(open(out / "history.csv", newline="")))["loss"])
        assert first < fresh[0] - 0.5 * (fresh[0] - fresh[-1]), (first, fresh)


def test_train_init_from_with_mismatched_shapes_is_a_clear_error(workdir, trained):
    base, _ = trained
    config = small_config(workdir, "units: 8", "units: 9", name="wider.yaml")
    out = workdir / "init-mismatch"
    for source in (base, base / "weights.safetensors"):
        result = fails(["train", config, "--out", out, "--init-from", source])
        [line] = error_lines(result)
        assert line.startswith("error: --init-from ")
        assert "dense_Dense1/kernel" in line and "[6,9]" in line and "[6,8]" in line, line
    assert not out.exists(), "nothing is written when the weights do not fit"


def test_train_missing_config_is_one_line_exit_1(workdir):
    result = fails(["train", workdir / "nowhere.yaml"])
    [line] = error_lines(result)
    assert line.startswith("error: ") and "nowhere.yaml" in line


def test_train_data_that_does_not_fit_the_model_fails_before_the_run_dir(workdir):
    config = small_config(workdir, "n_features: 6", "n_features: 7", name="wrongdata.yaml")
    out = workdir / "wrongdata"
    result = fails(["train", config, "--out", out])
    [line] = error_lines(result)
    assert "[n,7]" in line and "[n,6]" in line, line
    assert not out.exists()


def test_usage_error_exits_2(config_path):
    assert invoke(["train", config_path, "--log-format", "xml"]).exit_code == 2
    assert invoke(["train"]).exit_code == 2
    assert invoke(["nosuchcommand"]).exit_code == 2


# ---------------------------------------------------------------------- display

def test_no_color_with_a_forced_terminal_has_no_colour_codes(workdir, config_path):
    # The control run proves the terminal is really forced (colour appears without NO_COLOR).
    coloured = ok(["train", config_path, "--out", workdir / "tty-colour"], env={"FORCE_COLOR": "1"})
    assert COLOR_SGR.search(coloured.stdout), "a forced terminal shows colour"
    plain = ok(["train", config_path, "--out", workdir / "tty-nocolour"],
               env={"FORCE_COLOR": "1", "NO_COLOR": "1"})
    assert not COLOR_SGR.search(plain.stdout), [m.group(0) for m in COLOR_SGR.finditer(plain.stdout)][:5]
    assert "Epoch 3/3" in plain.stdout
    bad = small_config(workdir, "units: 3, activation: softmax", "unts: 3, activation: softmax", "nc.yaml")
    error = fails(["validate", bad], env={"FORCE_COLOR": "1", "NO_COLOR": "1"})
    assert not COLOR_SGR.search(error.stderr) and "unknown key 'unts'" in error.stderr
    red = fails(["validate", bad], env={"FORCE_COLOR": "1"})
    assert "\x1b[31m" in red.stderr, "errors are red on a terminal"


# ---------------------------------------------------------------------- summary

def test_summary_tfjs_guide_anchors_exactly():
    result = ok(["summary", TFJS_MLP])
    rows = table_rows(result.stdout)
    assert rows == [["Layer (type)", "Output shape", "Param #"],
                    ["dense_Dense1 (Dense)", "[null,32]", "25120"],
                    ["dense_Dense2 (Dense)", "[null,10]", "330"]]
    lines = [line.strip() for line in result.stdout.splitlines()]
    for anchor in ("Total params: 25450", "Trainable params: 25450", "Non-trainable params: 0"):
        assert anchor in lines, anchor
    assert "Optimizer: sgd, learning_rate=0.01" in lines
    assert "Loss: categorical_crossentropy" in lines
    assert "Metrics: accuracy" in lines
    flops = next(line for line in lines if line.startswith("FLOPs per sample"))
    # Pinned (issue 9): a multiply-add per kernel entry is 2 FLOPs, a bias add 1 per unit.
    assert int(flops.split(":")[1].replace(",", "")) == 2 * (784 * 32 + 32 * 10) + 32 + 10 == 50_858
    assert "Weights size: 101,800 bytes" in lines  # 25450 float32
    assert "dense_Dense1/kernel" not in result.stdout, "weights only with --weights"


def test_summary_weights_lists_every_weight_with_its_shape():
    result = ok(["summary", TFJS_MLP, "--weights"])
    rows = table_rows(result.stdout)
    assert [["dense_Dense1/kernel", "[784,32]"], ["dense_Dense1/bias", "[32]"],
            ["dense_Dense2/kernel", "[32,10]"], ["dense_Dense2/bias", "[10]"]] == \
        [row for row in rows if row and "/" in row[0]]


def test_summary_set_changes_the_table():
    result = ok(["summary", TFJS_MLP, "--set", "model.layers.0.units=64"])
    rows = table_rows(result.stdout)
    assert rows[1] == ["dense_Dense1 (Dense)", "[null,64]", str(784 * 64 + 64)]
    assert "Total params: 50890" in result.stdout


def test_summary_of_a_run_directory_matches_its_config(trained, config_path):
    run_dir, _ = trained
    from_run = ok(["summary", run_dir, "--weights"]).stdout
    from_config = ok(["summary", config_path, "--weights"]).stdout
    assert table_rows(from_run) == table_rows(from_config)
    assert ["dense_Dense1 (Dense)", "[null,8]", "56"] in table_rows(from_run)
    assert "Total params: 83" in from_run


def test_summary_of_a_bad_config_and_a_missing_target_fail_cleanly(workdir):
    bad = small_config(workdir, "units: 8", "units: -1", "neg.yaml")
    [line] = error_lines(fails(["summary", bad]))
    assert line == f"error: {bad}:6:28: model.layers.0.units: must be > 0, got -1"
    fails(["summary", workdir / "missing-dir"])


# ---------------------------------------------------------------------- validate: bad configs

# (id, old text in SMALL, new text, --set options, expected problems with {f} for the file)
BAD_CONFIGS = [
    ("misspelled_key", "units: 8", "unts: 8", [],
     ["{f}:6:21: model.layers.0.unts: unknown key 'unts'; did you mean 'units'?"]),
    ("misspelled_top_level_key", "metrics:", "metrcs:", [],
     ["{f}:10:1: metrcs: unknown key 'metrcs'; did you mean 'metrics'?"]),
    ("misspelled_layer_type", "{type: dense, units: 3", "{type: dnese, units: 3", [],
     ["{f}:7:14: model.layers.1.type: unknown layer type 'dnese'; did you mean 'dense'?"]),
    ("misspelled_activation", "activation: relu", "activation: rleu", [],
     ["{f}:6:43: model.layers.0.activation: unknown activation 'rleu'; did you mean 'relu'?"]),
    ("misspelled_loss", "loss: categorical_crossentropy", "loss: categorical_crossentropyy", [],
     ["{f}:9:7: loss: unknown loss 'categorical_crossentropyy'; did you mean 'categorical_crossentropy'?"]),
    ("misspelled_optimizer_id", "optimizer: {type: adam, learning_rate: 0.01}", "optimizer: adamm", [],
     ["{f}:8:12: optimizer: unknown optimizer 'adamm'; did you mean 'adam'?"]),
    ("misspelled_optimizer_type", "{type: adam,", "{type: sdg,", [],
     ["{f}:8:19: optimizer.type: unknown optimizer 'sdg'; did you mean 'sgd'?"]),
    ("negative_units", "units: 8", "units: -3", [],
     ["{f}:6:28: model.layers.0.units: must be > 0, got -3"]),
    ("zero_batch_size", "batch_size: 32", "batch_size: 0", [],
     ["{f}:15:15: fit.batch_size: must be > 0, got 0"]),
    ("inf_learning_rate", "learning_rate: 0.01", "learning_rate: .inf", [],
     ["{f}:8:40: optimizer.learning_rate: must be a finite number, not .inf or .nan"]),
    ("duplicate_key", "seed: 0\n", "seed: 0\nseed: 1\n", [],
     ["{f}:4:1: seed: duplicate key 'seed' (first defined at line 3, column 1)"]),
    ("validation_split_one", "validation_split: 0.2", "validation_split: 1", [],
     ["{f}:16:21: fit.validation_split: must be < 1.0, got 1"]),
    ("set_bad_path", None, None, ["fit.epochs.max=3"],
     ["--set fit.epochs.max: cannot set 'max' inside fit.epochs, which is 3, not a mapping or a list"]),
    ("set_index_out_of_range", None, None, ["model.layers.2.units=4"],
     ["--set model.layers.2.units: index 2 is out of range; model.layers has 2 items (indices 0 to 1)"]),
    ("set_misspelled_key", None, None, ["fit.epoch=3"],
     ["--set fit.epoch: unknown key 'epoch'; did you mean 'epochs'?"]),
    ("set_bad_value", None, None, ["optimizer=adamm"],
     ["--set optimizer (overrides {f}:8:1): unknown optimizer 'adamm'; did you mean 'adam'?"]),
    ("several_problems_at_once", "units: 8, activation: relu", "unts: 8, activation: rleu",
     ["fit.batch_size=0"],
     ["{f}:6:21: model.layers.0.unts: unknown key 'unts'; did you mean 'units'?",
      "{f}:6:42: model.layers.0.activation: unknown activation 'rleu'; did you mean 'relu'?",
      "--set fit.batch_size (overrides {f}:15:3): must be > 0, got 0"]),
    # Checked after the schema, without data: the loss against the model's output.
    ("loss_output_mismatch", "units: 3, activation: softmax", "units: 1, activation: sigmoid", [],
     ["{f}:9:7: loss: categorical_crossentropy needs an output with at least 2 units (one per "
      "class), the model outputs 1; use binary_crossentropy for 1 unit"]),
]


@pytest.mark.parametrize("old, new, overrides, expected", [case[1:] for case in BAD_CONFIGS],
                         ids=[case[0] for case in BAD_CONFIGS])
def test_validate_bad_config_prints_every_located_problem(tmp_path, old, new, overrides, expected):
    path = small_config(tmp_path, old, new)
    args = ["validate", path]
    for item in overrides:
        args += ["--set", item]
    result = fails(args)
    assert error_lines(result) == [f"error: {line.format(f=path)}" for line in expected]
    assert result.stdout == "", "no 'ok' and nothing else on stdout"


def test_bad_config_table_has_unique_ids():
    assert len({case[0] for case in BAD_CONFIGS}) == len(BAD_CONFIGS) >= 12


def test_train_reports_the_same_problems_before_any_work(workdir):
    path = small_config(workdir, "units: 8", "unts: 8", "train-bad.yaml")
    out = workdir / "never-bad"
    result = fails(["train", path, "--out", out])
    assert error_lines(result) == [f"error: {path}:6:21: model.layers.0.unts: unknown key 'unts'; "
                                   "did you mean 'units'?"]
    assert not out.exists()


def test_a_mask_a_recurrent_layer_cannot_read_is_one_located_line_before_any_work(workdir):
    # a Masking over [2, 2, 2] makes a mask over [2, 2]; the Reshape keeps the steps axis and
    # passes it to the LSTM, which reads one value per step (its fit died in numpy's broadcast)
    layers = ("{type: reshape, target_shape: [2, 2, 2]}", "{type: masking}", "{type: reshape, target_shape: [2, 4]}",
              "{type: lstm, units: 3}")
    path = write(workdir / "mask-bad.yaml", teacher_config(name="mask-bad", layers=layers))
    expected = [f"error: {path}:9:7: model.layers.4: lstm_LSTM1 reads a mask of one value per step, [2], but the "
                "mask masking_Masking1 makes reaches it over [2,2]"]
    assert path.read_text().splitlines()[8] == "    - {type: lstm, units: 3}"
    assert error_lines(fails(["summary", path])) == expected
    out = workdir / "never-mask-bad"
    assert error_lines(fails(["train", path, "--out", out])) == expected
    assert not out.exists()


def test_validate_ok(config_path):
    assert ok(["validate", config_path]).stdout == "ok\n"
    for shipped in sorted((ROOT / "configs").glob("*.yaml")):
        if shipped.name == "stream_npy.yaml" and not (ROOT / "runs" / "mnist_npy" / "x.npy").exists():
            # its .npy files are made by the user (see its header), and validate opens the data
            lines = error_lines(fails(["validate", shipped]))
            assert lines[0].startswith(f"error: {shipped}:") and "data.train.stream.source.npy: " in lines[0], lines
            assert "x.npy: no such file" in lines[0]
            continue
        assert ok(["validate", shipped]).stdout == "ok\n", shipped


def test_validate_set_with_a_list_index_works(config_path):
    from trainctl.config import load_config_text

    assert ok(["validate", config_path, "--set", "model.layers.0.units=64"]).stdout == "ok\n"
    printed = ok(["validate", config_path, "--set", "model.layers.0.units=64",
                  "--set", "model.layers.1.units=4", "--print-config"]).stdout
    config = load_config_text(printed, "printed").config
    assert config.model.layers[0].params.units == 64
    assert config.model.layers[1].params.units == 4


def test_camel_case_keys_and_ids_are_accepted(tmp_path, config_path):
    from trainctl.config import load_config

    camel = write(tmp_path / "camel.yaml", SMALL
                  .replace("input_shape:", "inputShape:")
                  .replace("{type: adam, learning_rate: 0.01}", "{type: adam, learningRate: 0.01}")
                  .replace("loss: categorical_crossentropy", "loss: categoricalCrossentropy")
                  .replace("units: 3, activation: softmax",
                           "units: 3, activation: softmax, useBias: true, kernelInitializer: glorotNormal")
                  .replace("batch_size:", "batchSize:").replace("validation_split:", "validationSplit:"))
    assert ok(["validate", camel]).stdout == "ok\n"
    assert load_config(camel).config == load_config(config_path).config


# ---------------------------------------------------------------------- predict

def test_predict_round_trip_equals_numpy_forward_pass(workdir, trained, inputs):
    run_dir, _ = trained
    expected = numpy_forward(run_dir, inputs)
    np.save(workdir / "x.npy", inputs)
    np.savez(workdir / "x.npz", x=inputs)
    header = ",".join(f"f{i}" for i in range(6))
    np.savetxt(workdir / "x.csv", inputs, delimiter=",", header=header, comments="", fmt="%.9g")
    for source in ("x.npy", "x.npz", "x.csv"):
        out = workdir / f"pred-{source}.npy"
        result = ok(["predict", run_dir, "--input", workdir / source, "--output", out])
        assert f"wrote {len(inputs)} predictions" in result.stderr
        predictions = np.load(out, allow_pickle=False)
        assert predictions.shape == (len(inputs), 3)
        np.testing.assert_allclose(predictions, expected, atol=1e-5, err_msg=source)


def test_predict_csv_output_has_class_and_probabilities(workdir, trained, inputs):
    run_dir, _ = trained
    np.save(workdir / "in.npy", inputs)
    out = workdir / "pred.csv"
    ok(["predict", run_dir, "--input", workdir / "in.npy", "--output", out, "--batch-size", "4"])
    with open(out, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["class", "p_0", "p_1", "p_2"]
    expected = numpy_forward(run_dir, inputs)
    assert len(rows) == len(inputs) + 1
    probabilities = np.array([[float(v) for v in row[1:]] for row in rows[1:]])
    np.testing.assert_allclose(probabilities, expected, atol=1e-5)
    assert [int(row[0]) for row in rows[1:]] == list(expected.argmax(axis=1))


def test_predict_without_output_prints_a_table(workdir, trained, inputs):
    run_dir, _ = trained
    np.save(workdir / "show.npy", inputs)
    result = ok(["predict", run_dir, "--input", workdir / "show.npy"])
    rows = table_rows(result.stdout)
    assert rows[0] == ["#", "class", "p_0", "p_1", "p_2"]
    expected = numpy_forward(run_dir, inputs)
    assert [int(row[1]) for row in rows[1:]] == list(expected.argmax(axis=1))


def test_predict_shape_mismatch_names_expected_and_given_shape(workdir, trained):
    run_dir, _ = trained
    np.save(workdir / "wide.npy", np.zeros((4, 7), np.float32))
    [line] = error_lines(fails(["predict", run_dir, "--input", workdir / "wide.npy"]))
    assert line == f"error: {workdir / 'wide.npy'}: inputs have shape [n,7], the model expects [n,6]"


def test_predict_error_paths(workdir, trained):
    run_dir, _ = trained
    [line] = error_lines(fails(["predict", run_dir, "--input", workdir / "absent.npy"]))
    assert "absent.npy" in line and "not found" in line
    write(workdir / "x.txt", "1,2,3\n")
    [line] = error_lines(fails(["predict", run_dir, "--input", workdir / "x.txt"]))
    assert ".txt" in line
    [line] = error_lines(fails(["predict", workdir / "not-a-run", "--input", workdir / "x.txt"]))
    assert "not-a-run" in line
    assert invoke(["predict", run_dir]).exit_code == 2, "--input is required"


def test_predict_refuses_a_damaged_run(workdir, trained):
    import shutil

    run_dir, _ = trained
    damaged = workdir / "damaged"
    shutil.copytree(run_dir, damaged)
    data = (damaged / "weights.safetensors").read_bytes()
    (damaged / "weights.safetensors").write_bytes(data[: len(data) // 2])
    np.save(workdir / "d.npy", np.zeros((2, 6), np.float32))
    [line] = error_lines(fails(["predict", damaged, "--input", workdir / "d.npy"]))
    assert "weights.safetensors" in line


# ---------------------------------------------------------------------- evaluate

def test_evaluate_on_the_runs_validation_data_matches_the_last_epoch(trained):
    run_dir, _ = trained
    result = ok(["evaluate", run_dir])
    values = {row[0]: row[1] for row in table_rows(metrics_table(result.stdout))[1:]}
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert values == {"loss": f"{metrics['val_loss']:.4f}", "accuracy": f"{metrics['val_accuracy']:.4f}"}
    title = result.stdout.split("┏")[0].strip()
    assert title.startswith("evaluation on ") and "\n" not in title, "the title is one line"


def test_evaluate_data_file(workdir, trained, inputs):
    """Labels equal to the model's own predictions: accuracy 1 and loss the mean -log p(max)."""
    run_dir, _ = trained
    expected = numpy_forward(run_dir, inputs)
    np.savez(workdir / "labelled.npz", x=inputs, y=expected.argmax(axis=1))
    result = ok(["evaluate", run_dir, "--data", workdir / "labelled.npz"])
    values = {row[0]: row[1] for row in table_rows(metrics_table(result.stdout))[1:]}
    assert values["accuracy"] == "1.0000"
    assert float(values["loss"]) == pytest.approx(-np.log(expected.max(axis=1)).mean(), abs=1e-4)


def test_evaluate_data_file_with_one_hot_targets(workdir, trained, inputs):
    """A categorical_crossentropy model judged on one-hot y (the TF.js form of its targets)."""
    run_dir, _ = trained
    expected = numpy_forward(run_dir, inputs)
    one_hot = np.eye(3, dtype=np.float32)[expected.argmax(axis=1)]
    np.savez(workdir / "onehot.npz", x=inputs, y=one_hot)
    result = ok(["evaluate", run_dir, "--data", workdir / "onehot.npz"])
    values = {row[0]: row[1] for row in table_rows(metrics_table(result.stdout))[1:]}
    assert values["accuracy"] == "1.0000"


def test_evaluate_error_paths(workdir, trained, inputs):
    run_dir, _ = trained
    np.savez(workdir / "no-y.npz", x=inputs)
    [line] = error_lines(fails(["evaluate", run_dir, "--data", workdir / "no-y.npz"]))
    assert "no-y.npz" in line
    [line] = error_lines(fails(["evaluate", run_dir, "--data", workdir / "absent.npz"]))
    assert "absent.npz" in line and "not found" in line


# ---------------------------------------------------------------------- plot

def test_plot_terminal_draws_loss_and_accuracy(trained):
    run_dir, _ = trained
    result = ok(["plot", run_dir, "--terminal"])
    assert not ANSI.search(result.stdout)
    lines = [line.strip() for line in result.stdout.splitlines()]
    assert "loss" in lines and "accuracy" in lines  # the panels' titles
    assert "* loss   o val_loss" in lines and "* accuracy   o val_accuracy" in lines  # the legends
    assert sum(line.startswith("loss") and line.endswith("epoch") for line in lines) == 1  # axis labels


def test_plot_out_png_without_matplotlib_is_an_error_naming_the_extra(trained, tmp_path, monkeypatch):
    import sys

    run_dir, _ = trained
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    [line] = error_lines(fails(["plot", run_dir, "--out", tmp_path / "x.png"]))
    assert "writing a PNG needs matplotlib" in line and "pip install 'trainctl[plot]'" in line
    assert not (tmp_path / "x.png").exists()
    fallback = ok(["plot", run_dir])  # no --out: the charts in the terminal, the note on stderr
    assert "matplotlib is not installed" in fallback.stderr and "* loss   o val_loss" in fallback.stdout


def test_plot_of_a_missing_run_fails_cleanly(workdir):
    [line] = error_lines(fails(["plot", workdir / "no-run", "--terminal"]))
    assert "no-run" in line


# ---------------------------------------------------------------------- help

def test_help_lists_every_command():
    result = ok(["--help"])
    for command in ("train", "summary", "validate", "predict", "evaluate", "plot"):
        assert re.search(rf"│ {command}\b", result.stdout), command
    assert invoke([]).exit_code in (0, 2)  # no_args_is_help


@pytest.mark.parametrize("owns_process", [True, False], ids=["console_script", "in_process"])
def test_train_pauses_the_collector_only_until_training_when_it_is_the_process(tmp_path, monkeypatch, owns_process):
    """As the console script, `train` pauses garbage collection while it imports and builds,
    then freezes what it built and collects as usual from the first step. Called in-process
    (CliRunner here), it leaves the collector alone."""
    import gc

    from trainctl.cli import collector
    from trainctl.runs import train as runs_train
    from trainctl.train.trainer import Trainer

    monkeypatch.setattr(collector, "owns_process", owns_process)
    config = tmp_path / "small.yaml"
    config.write_text(SMALL)
    building, training = [], []  # (collector on, objects frozen) when the model is built, at each step
    prepare, train_batch = runs_train._prepare, Trainer.train_batch

    def seen(into):
        into.append((gc.isenabled(), gc.get_freeze_count()))

    monkeypatch.setattr(runs_train, "_prepare", lambda *a, **k: seen(building) or prepare(*a, **k))
    monkeypatch.setattr(Trainer, "train_batch", lambda self, *a, **k: seen(training) or train_batch(self, *a, **k))
    ok(["train", config, "--out", tmp_path / "run", "-q", "--set", "fit.jit_compile=false"])
    assert [on for on, _ in building] == [not owns_process]
    assert training and all(on for on, _ in training)  # every step ran with the collector on
    # what the command built before training frozen at its start (as the console script) or not
    assert (training[0][1] > building[0][1]) == owns_process
    assert gc.isenabled()
    fails(["train", config, "--out", tmp_path / "other", "-q", "--set", "fit.epochs=zero"])
    assert gc.isenabled()  # a command that fails before training turns it back on too


def test_train_in_process_leaves_a_program_s_disabled_collector_off(tmp_path):
    """A program that turned its own collector off and runs `train` in-process finds it off
    after training began and ended (the start-up pause's end touches only its own pause)."""
    import gc

    config = tmp_path / "small.yaml"
    config.write_text(SMALL)
    gc.disable()
    try:
        ok(["train", config, "--out", tmp_path / "run", "-q", "--set", "fit.jit_compile=false"])
        assert not gc.isenabled()
    finally:
        gc.enable()
