"""What `trainctl summary` describes: a model built from a config or a run directory."""

from __future__ import annotations

from pathlib import Path

from trainctl.errors import ArtifactError, TrainctlError
from trainctl.runs.build import build_model
from trainctl.runs.files import CONFIG_FILE


# -- summary ---------------------------------------------------------------------------
def model_from_target(target: Path, overrides: list[str]):
    """The model from a config file or a run directory, built from shapes alone (nothing
    allocated), with the compile choices to show beside it. No data is read, no kernel compiled."""
    from trainctl.config import load_config, load_config_text

    from trainctl.runs.interop import foreign_format, open_foreign_run

    target = Path(target)
    if foreign_format(target) is not None:  # a TF.js model.json or a Keras .keras file
        run = open_foreign_run(target)
        return run.model, run.config
    if target.is_dir():
        from trainctl.nn.model import Sequential
        from trainctl.runs.rundir import RunDir

        run_dir = RunDir.open(target, require_weights=False)
        config = load_config_text(run_dir.read_config_text(), str(run_dir.file(CONFIG_FILE))).config
        try:
            model = Sequential.from_json(run_dir.read_model(), seed=config.seed, shapes_only=True)
        except TrainctlError as error:
            raise ArtifactError(f"{run_dir.file('model.json')}: {error}") from None
    else:
        loaded = load_config(target, overrides)
        config = loaded.config
        model = build_model(config, loaded, shapes_only=True)
    return model, config


def describe_model(model, config=None):
    """Rows, totals, weights and the extra lines of the summary table. The compile choices
    come from `config`, or from the model's own compile() when there is no config (a model
    built in Python); an uncompiled model shows none."""
    from trainctl.nn.model import weights_nbytes

    rows = model.summary_rows()
    totals = model.param_totals()
    weights = [(w.name, list(w.value.shape)) for w in model.weights]
    extras = {}
    if config is not None:
        compiled = {"optimizer": config.optimizer.to_dict(), "loss": config.loss, "metrics": [m if isinstance(m, str) else (getattr(m.params, "name", None) or m.type) for m in config.metrics]}
    else:
        compiled = model.compile_config or None
    if compiled is not None:
        optimizer = dict(compiled["optimizer"])
        extras["Optimizer"] = optimizer.pop("type") + "".join(
            f", {key}={value}" for key, value in optimizer.items() if value is not None)
        extras["Loss"] = compiled["loss"]
        extras["Metrics"] = ", ".join(m if isinstance(m, str) else str(m.get("name") or m.get("type")) for m in compiled["metrics"]) or "none"
    extras["FLOPs per sample (forward)"] = f"{model.flops_per_sample():,}"
    extras["Weights size"] = f"{weights_nbytes(model):,} bytes"
    return rows, totals, weights, extras
