"""`Sequential.save(dir)` and `trainctl.load(dir)`: a model made in Python, kept as a run
directory (the files `trainctl train` writes, minus the config it did not come from).

model.json carries the architecture plus `training_config` (optimizer, loss, metrics), as
Keras's model JSON does; weights.safetensors and optimizer.safetensors hold the values, and
history.csv the epochs of the last fit. `load` also opens a run directory written by
`trainctl train` (compiled from its config.yaml).
"""

from __future__ import annotations

from pathlib import Path

from trainctl.errors import ArtifactError, TrainctlError

TRAINING_CONFIG = "training_config"


def save_model(model, path, *, overwrite: bool = True) -> None:
    from trainctl.runs.files import MODEL_FILE
    from trainctl.runs.rundir import RunDir

    path = Path(path)
    if path.is_dir() and any(path.iterdir()):
        if not (path / MODEL_FILE).is_file():
            raise ArtifactError(f"{path}: exists and is not a saved model; choose an empty or new directory")
        if not overwrite:
            raise ArtifactError(f"{path}: a saved model is already there (overwrite=False)")
        run_dir = RunDir(path)
        (path / "history.csv").unlink(missing_ok=True)  # the new history replaces the old one
    else:
        run_dir = RunDir.create(path.parent, path.name, path)
    architecture = model.to_json()
    if model.loss is not None:
        architecture[TRAINING_CONFIG] = dict(model.compile_config)
    run_dir.write_model(architecture)
    run_dir.write_weights({w.name: w.value for w in model.weights})
    if model.optimizer is not None:
        run_dir.write_optimizer(model.optimizer.state(), {"type": model.optimizer.get_config()["type"]})
    history = model.history
    if history is not None:
        for index, epoch in enumerate(history.epoch):
            run_dir.append_history({"epoch": epoch + 1, **{key: values[index] for key, values in history.history.items()}})


def load_model(path):
    """The Sequential saved at `path` (by `Sequential.save` or `trainctl train`), with its
    weights, compiled as it was, and with its optimizer state when one was saved."""
    from trainctl.nn.model import Sequential
    from trainctl.runs.files import CONFIG_FILE, MODEL_FILE, OPTIMIZER_FILE, WEIGHTS_FILE
    from trainctl.runs.rundir import RunDir

    path = Path(path)
    if not path.is_dir():
        raise ArtifactError(f"{path}: saved model directory not found")
    if (path / CONFIG_FILE).is_file():
        from trainctl.runs.inference import open_run

        return open_run(path).model
    missing = [name for name in (MODEL_FILE, WEIGHTS_FILE) if not (path / name).is_file()]
    if missing:
        raise ArtifactError(f"{path}: not a saved model (missing {', '.join(missing)})")
    run_dir = RunDir(path)
    architecture = run_dir.read_model()
    try:
        model = Sequential.from_json(architecture)
    except TrainctlError as error:
        raise ArtifactError(f"{run_dir.file(MODEL_FILE)}: {error}") from None
    expected = {w.name: (tuple(w.value.shape), w.value.dtype.name) for w in model.weights}
    model.set_weights(run_dir.read_weights(expected), source=str(run_dir.file(WEIGHTS_FILE)))
    training = architecture.get(TRAINING_CONFIG)
    if isinstance(training, dict):
        model.compile(optimizer=training.get("optimizer", "sgd"), loss=training.get("loss", "mean_squared_error"),
                      metrics=training.get("metrics", []))
        if (path / OPTIMIZER_FILE).is_file():
            arrays, _ = run_dir.read_optimizer()
            try:
                model.optimizer.load_state(arrays)
            except TrainctlError as error:
                raise ArtifactError(f"{run_dir.file(OPTIMIZER_FILE)}: {error}") from None
    return model
load = load_model  # trainctl.load
