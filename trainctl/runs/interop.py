"""Export a run to TF.js / Keras / ONNX, and use TF.js / Keras model files as runs.

`export_run(run_dir, fmt, out)` writes one format. `foreign_format(path)` says whether a
path is a TF.js model.json (or its folder) or a Keras `.keras` file; `read_foreign` reads
one into a model; `import_to_run` writes a run directory from one, with a config.yaml that
trains as written; `open_foreign_run` gives the `Run` that predict/evaluate use.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainctl.errors import TrainctlError

EXTENSIONS = {".json": "tfjs", ".keras": "keras", ".onnx": "onnx"}
FOREIGN_NOTE = "imported"  # data.json marker: the run came from another runtime's file


def infer_format(out: Path, fmt: str | None) -> str:
    """The format named by --format, else by the --out extension (a folder means tfjs)."""
    if fmt is not None:
        fmt = fmt.lower()
        if fmt not in ("tfjs", "keras", "onnx"):
            raise TrainctlError(f"--format {fmt!r}: choose tfjs, keras or onnx")
        return fmt
    suffix = Path(out).suffix.lower()
    if suffix in EXTENSIONS:
        return EXTENSIONS[suffix]
    if suffix == "":
        return "tfjs"  # a folder for model.json + shards
    raise TrainctlError(f"--out {out}: cannot tell the format from {suffix!r}; "
                        "pass --format tfjs|keras|onnx (or use .json, .keras, .onnx)")


@dataclass
class ExportResult:
    format: str
    path: Path
    note: str


def _training_spec(run):
    from trainctl.runs.formats.tfjs import TrainingSpec

    return TrainingSpec(run.config.optimizer.to_dict(), run.config.loss, list(run.config.metrics))


def export_run(run_dir: Path, fmt: str | None, out: Path, *, include_optimizer: bool = False) -> ExportResult:
    """Write the run's trained model in `fmt` at `out` (tfjs: a folder or its model.json).
    include_optimizer (tfjs): the run's optimizer slots too, as TF.js's includeOptimizer
    saves them, so training continues in TF.js where it stopped here."""
    from trainctl.runs.inference import open_run

    fmt = infer_format(out, fmt)
    if include_optimizer and fmt != "tfjs":
        raise TrainctlError(f"--include-optimizer is for tfjs exports (TF.js reads optimizer weights), not {fmt}")
    run = open_run(Path(run_dir))
    model = run.model
    steps = [step.type for step in run.preprocessing.steps]
    x_steps = [s for s in steps if s != "one_hot"]
    if fmt == "onnx":
        from trainctl.runs.formats.onnx import write_onnx

        path = write_onnx(model, out, run.preprocessing)
        folded = [s for s in x_steps if s not in ("flatten", "reshape")]
        note = ("ONNX graph 'input' → 'output', opset 17, dynamic batch; "
                + (f"preprocessing folded in ({', '.join(folded)})" if folded else "no preprocessing folded in")
                + (f"; feed inputs reshaped to [n,{','.join(map(str, model.input_shape))}]"
                   if len(folded) != len(x_steps) else ""))
        return ExportResult(fmt, path, note)
    if fmt == "keras":
        from trainctl.runs.formats.keras import write_keras

        path = write_keras(model, out, _training_spec(run))
    else:
        from trainctl.runs.formats.tfjs import tfjs_metrics, write_tfjs

        training = _training_spec(run)
        optimizer = None
        if include_optimizer:
            if model.optimizer.type_id == "adamax":
                raise TrainctlError("--include-optimizer: TF.js cannot load Adamax state (getWeights is not "
                                    "implemented there); export without it")
            state, _ = run.run_dir.read_optimizer()
            model.optimizer.load_state(state)
            optimizer = model.optimizer
        path = write_tfjs(model, out, training, optimizer=optimizer)
        dropped = tfjs_metrics(training.metrics)[1]
    note = (f"preprocessing ({', '.join(x_steps)}) is not part of the model: apply it before predict"
            if x_steps else "no preprocessing")
    if fmt == "tfjs" and dropped:
        note += f"; trainingConfig leaves out metrics TF.js has no string id for: {', '.join(dropped)}"
    return ExportResult(fmt, path, note)


# -- foreign model files --------------------------------------------------------------------
def foreign_format(path: Path) -> str | None:
    """'tfjs' for a TF.js model.json (or a folder holding one that is not a run directory),
    'keras' for a .keras file, None otherwise (a run directory, a config, ...)."""
    path = Path(path)
    if path.suffix.lower() == ".keras":
        return "keras"
    if path.is_dir():
        if (path / "config.yaml").exists():
            return None
        path = path / "model.json"
    if path.suffix.lower() != ".json" or not path.is_file():
        return None
    try:
        head = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return "tfjs" if isinstance(head, dict) and "modelTopology" in head else None


def read_foreign(path: Path, *, seed: int = 0):
    """A TF.js or Keras file → TfjsModel (model with weights, training spec, optimizer state)."""
    fmt = foreign_format(path)
    if fmt == "keras":
        from trainctl.runs.formats.keras import read_keras

        return read_keras(path, seed=seed)
    if fmt == "tfjs":
        from trainctl.runs.formats.tfjs import read_tfjs

        return read_tfjs(path, seed=seed)
    raise TrainctlError(f"{path}: not a TF.js model.json or a Keras .keras file")


def _default_training(model) -> tuple[Any, str, list[str], bool]:
    """(optimizer, loss, metrics, guessed) for a file saved without a training config."""
    last = model.layers[-1]
    activation = last.output_activation.name if last.output_activation is not None else None
    if activation == "softmax":
        return "adam", "categorical_crossentropy", ["accuracy"], True
    if activation == "sigmoid" and model.output_shape[-1] == 1:
        return "adam", "binary_crossentropy", ["accuracy"], True
    return "adam", "mean_squared_error", [], True


def _stand_in_data(model, loss: str, n_classes: int) -> dict[str, Any]:
    """Generated data of the model's shapes, so the written config trains as it is."""
    import math

    features = math.prod(model.input_shape)
    classification = {"categorical_crossentropy": "one_hot", "sparse_categorical_crossentropy": "sparse",
                      "binary_crossentropy": "binary"}
    if loss in classification:
        train = {"generator": "teacher", "n_samples": 1000, "n_features": features,
                 "n_classes": max(2, n_classes), "hidden": 16, "labels": classification[loss]}
        data: dict[str, Any] = {"train": train, "validation_split": 0.2}
        if len(model.input_shape) != 1:
            data["preprocessing"] = [{"type": "reshape", "target_shape": list(model.input_shape)}]
        return data
    return {"train": {"generator": "random_normal", "n_samples": 1000, "shape": list(model.input_shape),
                      "target_shape": list(model.output_shape)}, "validation_split": 0.2}


def imported_config(imported, *, name: str, data_path: Path | None = None) -> tuple[dict[str, Any], list[str]]:
    """The config dict of an imported model and the header comment lines."""
    model = imported.model
    source = imported.source
    notes = [f"Imported by `trainctl import` from {source}.",
             "The layers, names and options are the file's; the trained weights are in this run",
             "directory: continue training with",
             "  trainctl train <this folder>/config.yaml --init-from <this folder>"]
    if imported.training is not None:
        optimizer, loss, metrics = imported.training.optimizer, imported.training.loss, imported.training.metrics
    else:
        optimizer, loss, metrics, _ = _default_training(model)
        notes.append(f"The file had no training config: optimizer {optimizer!r} and loss {loss!r} were chosen "
                     "from the output layer.")
    if data_path is not None:
        data: dict[str, Any] = {"train": {"npz": str(Path(data_path).resolve())}, "validation_split": 0.2}
    else:
        data = _stand_in_data(model, loss, model.output_shape[-1])
        notes.append("data: generated stand-in of the model's input/output shapes; replace it with your data.")
    config = {
        "name": name,
        "seed": 0,
        "model": {"layers": [layer.get_config() for layer in model.layers]},
        "optimizer": optimizer,
        "loss": loss,
        "metrics": list(metrics),
        "data": data,
        "fit": {"epochs": 1, "batch_size": 32},
    }
    config["model"]["layers"][0]["input_shape"] = list(model.input_shape)
    return config, notes


def _config_text(config: dict[str, Any], notes: list[str]) -> str:
    import yaml

    header = "".join(f"# {line}\n" for line in notes)
    return header + yaml.safe_dump(config, sort_keys=False, default_flow_style=None, width=100)


def _run_name(path: Path) -> str:
    import re

    stem = path.parent.name if path.name == "model.json" else path.stem
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip("-.") or "imported"
    return name if name[0].isalnum() else f"m{name}"


def import_to_run(path: Path, out: Path, *, data_path: Path | None = None) -> Path:
    """Write a run directory (config.yaml, model.json, weights, optimizer state when the
    file has it) from a TF.js or Keras model file. Returns the run directory."""
    from trainctl.config import load_config_text
    from trainctl.runs.atomic import atomic_write_json
    from trainctl.runs.build import compile_from_config
    from trainctl.runs.files import DATA_FILE
    from trainctl.runs.rundir import RunDir

    path = Path(path)
    if foreign_format(path) is None:
        raise TrainctlError(f"{path}: not a TF.js model.json (with modelTopology) or a Keras .keras file")
    imported = read_foreign(path)
    config, notes = imported_config(imported, name=_run_name(path), data_path=data_path)
    text = _config_text(config, notes)
    loaded = load_config_text(text, str(Path(out) / "config.yaml"))  # the config must validate as written
    model = imported.model
    compile_from_config(model, loaded.config, loaded)
    if imported.optimizer_state is not None:
        model.optimizer.load_state(imported.optimizer_state)
    run_dir = RunDir.create(Path("."), loaded.config.name, out)
    atomic_write_json(run_dir.file(DATA_FILE), {"config_dir": str(Path.cwd()), "class_names": None,
                                                 "label_encoding": "none", "feature_names": None,
                                                 "source": FOREIGN_NOTE, "imported_from": str(path.resolve())})
    run_dir.write_model(model.to_json())
    run_dir.write_weights({w.name: w.value for w in model.weights})
    run_dir.write_optimizer(model.optimizer.state(), {"type": model.optimizer.get_config()["type"]})
    run_dir.write_config(text)
    return run_dir.path


def open_foreign_run(path: Path):
    """A `Run` (as open_run gives) for a TF.js/Keras file: its model and weights, the config
    `trainctl import` would write, no preprocessing."""
    from trainctl.config import load_config_text
    from trainctl.data import PreprocessingState
    from trainctl.runs.build import compile_from_config
    from trainctl.runs.inference import Run
    from trainctl.runs.rundir import RunDir

    path = Path(path)
    imported = read_foreign(path)
    config, notes = imported_config(imported, name=_run_name(path))
    loaded = load_config_text(_config_text(config, notes), f"{path} (as imported)")
    compile_from_config(imported.model, loaded.config, loaded)
    if imported.optimizer_state is not None:
        imported.model.optimizer.load_state(imported.optimizer_state)
    return Run(RunDir(path.parent if path.is_file() else path), loaded.config, imported.model,
               PreprocessingState([], []), {"model_file": str(path), "label_encoding": "none"})
