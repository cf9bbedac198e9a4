"""`trainctl init`: a commented starter config that trains as written.

Without a CSV the data come from a generator (spirals for classification, a noisy sine
for regression); with one, the header and the values decide the input width, the target
(the last column unless named), the task (a text target or a few integer values: classes)
and, for classification, the number of classes and the output layer. Nothing is imported
beyond the standard library; the config is checked by loading it back (`load_config`).
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass
from pathlib import Path

from trainctl.errors import DataError, TrainctlError

TASKS = ("classification", "regression")
SCHEMA_HINT_FILE = "schema/config.schema.json"
MAX_CLASSES_FOR_INTEGERS = 20  # an integer target with more distinct values reads as a quantity


@dataclass
class CsvFacts:
    path: Path
    columns: list[str]
    target: str
    features: list[str]  # numeric columns besides the target
    skipped: list[str]  # non-numeric columns left out of the features
    classes: list[str]  # distinct target values, in the order trainctl indexes them (sorted)
    numeric_target: bool
    n_rows: int


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def inspect_csv(path: Path, target: str | None) -> CsvFacts:
    """Header, numeric columns and target values of a CSV with a header row."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if not header:
            raise DataError(f"{path}: empty file; init needs a header row naming the columns")
        columns = [name.strip() for name in header]
        if target is None:
            target = columns[-1]
        if target not in columns:
            raise DataError(f"{path}: no column {target!r}; the columns are {', '.join(columns)}")
        index = columns.index(target)
        numeric = [True] * len(columns)
        classes: dict[str, None] = {}
        n_rows = 0
        for line, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) != len(columns):
                raise DataError(f"{path}:{line}: {len(row)} values, the header names {len(columns)} columns")
            n_rows += 1
            for column, cell in enumerate(row):
                if numeric[column] and not _is_number(cell.strip()):
                    numeric[column] = False
            classes.setdefault(row[index].strip(), None)
    if n_rows == 0:
        raise DataError(f"{path}: no data rows below the header")
    features = [name for i, name in enumerate(columns) if i != index and numeric[i]]
    skipped = [name for i, name in enumerate(columns) if i != index and not numeric[i]]
    if not features:
        raise DataError(f"{path}: no numeric feature columns besides the target {target!r}")
    ordered = sorted(classes, key=float) if numeric[index] else sorted(classes)
    return CsvFacts(path, columns, target, features, skipped, ordered, numeric[index], n_rows)


def guess_task(facts: CsvFacts) -> str:
    if not facts.numeric_target:
        return "classification"
    integers = all(float(value).is_integer() for value in facts.classes)
    return "classification" if integers and len(facts.classes) <= MAX_CLASSES_FOR_INTEGERS else "regression"


def _header(lines: list[str]) -> str:
    return "".join(f"# {line}\n" if line else "#\n" for line in lines)


def _schema_line(out_path: Path, schema_path: Path | None) -> str:
    if schema_path is None:
        return ""
    relative = os.path.relpath(Path(schema_path).resolve(), Path(out_path).resolve().parent)
    return f"# yaml-language-server: $schema={Path(relative).as_posix()}\n"


def starter_config(out_path: Path, *, task: str | None = None, csv_path: Path | None = None,
                   target: str | None = None, name: str | None = None,
                   schema_path: Path | None = None) -> str:
    """The YAML text of a starter config to be written at `out_path`."""
    if task is not None and task not in TASKS:
        raise TrainctlError(f"--task must be one of {', '.join(TASKS)}, got {task!r}")
    if target is not None and csv_path is None:
        raise TrainctlError("--target names a column of --csv FILE; give the CSV too")
    out_path = Path(out_path)
    name = name or _name_from(csv_path or out_path)
    schema = _schema_line(out_path, schema_path)
    if csv_path is None:
        return schema + (_generated_regression(name, out_path) if task == "regression"
                         else _generated_classification(name, out_path))
    facts = inspect_csv(Path(csv_path), target)
    task = task or guess_task(facts)
    if task == "regression" and not facts.numeric_target:
        raise DataError(f"{csv_path}: column {facts.target!r} holds text (e.g. {facts.classes[0]!r}); "
                        "regression needs numbers (use --task classification)")
    if task == "classification" and len(facts.classes) < 2:
        raise DataError(f"{csv_path}: column {facts.target!r} has a single value; a classifier needs at least 2 classes")
    return schema + _csv_config(name, out_path, facts, task)


def _name_from(path: Path) -> str:
    stem = "".join(c if c.isalnum() or c in "._-" else "-" for c in Path(path).stem).strip("-._")
    return stem or "starter"


def _usage(out_path: Path, override: str) -> list[str]:
    """The header's lines on how to run the config and override one of its values."""
    return ["", f"Run:       trainctl train {out_path}", f"Override:  trainctl train {out_path} {override}"]


# what the generated-data starters share: the seed's comment and the model's opening lines
_GENERATED_HEAD = """seed: 0                              # drives initial weights, shuffling and the generator
model:
  layers:                            # a Sequential stack, input first (TF.js/Keras names)
"""


def _generated_classification(name: str, out_path: Path) -> str:
    return _header([
        "A starter classifier (trainctl init): an MLP tells apart the 3 arms of a generated",
        "spiral (2 features, 6,000 points), judged on the last 20% held out. Trains in seconds.",
        *_usage(out_path, "--set fit.epochs=30 --set model.layers.0.units=128"),
        "Then:      trainctl plot runs/<name>/<timestamp>      (loss and accuracy curves)",
        "Your data: trainctl init --csv FILE [--target COLUMN] writes one for a CSV.",
    ]) + f"""name: {name}
{_GENERATED_HEAD}    - {{type: dense, units: 64, activation: relu, input_shape: [2]}}
    - {{type: dense, units: 64, activation: relu}}
    - {{type: dense, units: 3, activation: softmax}}   # one unit per class
optimizer: {{type: adam, learning_rate: 0.003}}
loss: categorical_crossentropy       # the class labels become one-hot targets
metrics: [accuracy]
data:
  train: {{generator: spirals, n_samples: 6000, n_classes: 3, turns: 1.5, noise: 0.05}}
fit:
  epochs: 15
  batch_size: 32
  shuffle: true                      # a new order every epoch
  validation_split: 0.2              # the last 20% of the samples, before shuffling (TF.js)
callbacks:
  - {{type: early_stopping, monitor: val_loss, patience: 5, restore_best_weights: true}}
"""


def _generated_regression(name: str, out_path: Path) -> str:
    return _header([
        "A starter regressor (trainctl init): an MLP fits y = sin(x) + noise on 4,000 generated",
        "points of [-pi, pi], judged on the last 20% held out. Trains in seconds.",
        *_usage(out_path, "--set fit.epochs=60"),
        "Your data: trainctl init --task regression --csv FILE [--target COLUMN]",
    ]) + f"""name: {name}
{_GENERATED_HEAD}    - {{type: dense, units: 64, activation: tanh, input_shape: [1]}}
    - {{type: dense, units: 64, activation: tanh}}
    - {{type: dense, units: 1}}        # one linear output: the predicted value
optimizer: {{type: adam, learning_rate: 0.003}}
loss: mean_squared_error
metrics: [mae]                       # mean absolute error, in the target's units
data:
  train: {{generator: sine, n_samples: 4000, noise: 0.05}}
fit:
  epochs: 30
  batch_size: 32
  shuffle: true
  validation_split: 0.2              # the last 20% of the samples, before shuffling (TF.js)
"""


def _yaml_str(text: str) -> str:
    """A YAML scalar for a column name or path (quoted when plain style would misread it)."""
    import json

    plain = text and all(c.isalnum() or c in "._-/" for c in text) and not _is_number(text) and \
        text.lower() not in ("true", "false", "null", "yes", "no", "on", "off", "~")
    return text if plain else json.dumps(text)


def _csv_config(name: str, out_path: Path, facts: CsvFacts, task: str) -> str:
    relative = Path(os.path.relpath(facts.path.resolve(), out_path.resolve().parent)).as_posix()
    n_features = len(facts.features)
    n_val = max(1, round(0.2 * facts.n_rows))
    features_line = ""
    skipped_note = []
    if facts.skipped:
        listed = ", ".join(_yaml_str(f) for f in facts.features)
        features_line = f"\n  # text columns left out: {', '.join(facts.skipped)}"
        features_line = f", features: [{listed}]}}{features_line}"
        skipped_note = [f"The text columns {', '.join(facts.skipped)} are left out of the features."]
    source = f"{{csv: {_yaml_str(relative)}, target: {_yaml_str(facts.target)}"
    source += features_line if features_line else "}"
    if task == "classification":
        n_classes = len(facts.classes)
        binary = n_classes == 2
        shown = ", ".join(facts.classes[:5]) + (", ..." if n_classes > 5 else "")
        output = (f"{{type: dense, units: 1, activation: sigmoid}}   # 2 classes: the probability of {facts.classes[1]!r}"
                  if binary else f"{{type: dense, units: {n_classes}, activation: softmax}}   # one unit per class")
        loss = ("binary_crossentropy            # the 2 class labels become 0/1 targets" if binary
                else "categorical_crossentropy       # the class labels become one-hot targets")
        what = f"a classifier of {facts.target!r} ({n_classes} classes: {shown})"
        metrics = "[accuracy]"
        hidden = "relu"
    else:
        output = "{type: dense, units: 1}        # one linear output: the predicted value"
        loss = "mean_squared_error"
        what = f"a regressor of {facts.target!r}"
        metrics = "[mae]                          # mean absolute error, in the target's units"
        hidden = "relu"
    header = _header([
        f"A starter config (trainctl init) for {facts.path.name}: {what}",
        f"from {n_features} numeric feature column{'s' if n_features != 1 else ''}, standardized; "
        f"judged on the last 20% of the {facts.n_rows} rows ({n_val}) held out.",
        *skipped_note,
        *_usage(out_path, "--set fit.epochs=100 --set model.layers.0.units=64"),
        "Then:      trainctl evaluate runs/<name>/<timestamp>",
        "           trainctl predict runs/<name>/<timestamp> --input new_rows.csv",
    ])
    return header + f"""name: {name}
seed: 0                              # drives initial weights and shuffling
model:
  layers:                            # a Sequential stack, input first (TF.js/Keras names)
    - {{type: dense, units: 32, activation: {hidden}, input_shape: [{n_features}]}}
    - {{type: dense, units: 32, activation: {hidden}}}
    - {output}
optimizer: {{type: adam, learning_rate: 0.003}}
loss: {loss}
metrics: {metrics}
data:
  train: {source}   # relative to this file
  validation_split: 0.2              # the last 20% of the rows, before shuffling (TF.js); shuffle the file first if it is sorted
  preprocessing: [standardize]       # mean/std of each feature, from the training rows only
fit:
  epochs: 50
  batch_size: 32
  shuffle: true                      # a new order every epoch
callbacks:
  - {{type: early_stopping, monitor: val_loss, patience: 10, restore_best_weights: true}}
"""
