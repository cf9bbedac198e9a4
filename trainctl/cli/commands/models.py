"""Commands over one model or run: summary, validate, predict, evaluate."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

from trainctl.cli.common import (
    MAX_MEMORY_HELP, SET_HELP, _max_memory, _stderr, _stdout, app, expected_failures
)


@app.command()
@expected_failures
def summary(
    target: Path = typer.Argument(..., help="A YAML config or a run directory."),
    set_: List[str] = typer.Option([], "--set", help=SET_HELP),
    weights: bool = typer.Option(False, "--weights", help="Also list every weight with its shape."),
) -> None:
    """Show the model table (computed from the config alone: no data, no kernels)."""
    from trainctl.cli.render import render_summary
    from trainctl.runs.summary import describe_model, model_from_target

    model, compile_info = model_from_target(target, set_)
    rows, totals, weight_list, extras = describe_model(model, compile_info)
    render_summary(_stdout(), rows, totals, weights=weight_list if weights else None, extras=extras)


@app.command()
@expected_failures
def validate(
    config: Path = typer.Argument(..., help="The YAML config to check."),
    set_: List[str] = typer.Option([], "--set", help=SET_HELP),
    print_config: bool = typer.Option(False, "--print-config", help="Print the resolved config."),
    max_memory: Optional[str] = typer.Option(None, "--max-memory", help=MAX_MEMORY_HELP),
) -> None:
    """Check a config (schema, ids, model shapes, loss vs output); print "ok" or every error."""
    from trainctl.config import config_to_yaml, load_config
    from trainctl.runs.build import check_config

    limit = _max_memory(max_memory)
    loaded = load_config(config, set_)
    check_config(loaded, limit)
    if print_config:
        sys.stdout.write(config_to_yaml(loaded.config))
    else:
        typer.echo("ok")


@app.command()
@expected_failures
def predict(
    run_dir: Path = typer.Argument(..., help="A run directory written by trainctl train."),
    input: Path = typer.Option(..., "--input", "-i", help="Inputs: .npy, .npz (key x or the only array) or .csv."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write predictions to .npy or .csv (default: print)."),
    batch_size: int = typer.Option(256, "--batch-size", min=1, max=1 << 24, help="Rows per forward pass (bounds memory)."),
    max_memory: Optional[str] = typer.Option(None, "--max-memory", help=MAX_MEMORY_HELP),
) -> None:
    """Run a trained model on new inputs."""
    from trainctl.runs.inference import open_run, predict_file

    run = open_run(run_dir, _max_memory(max_memory))
    result = predict_file(run, input, output, batch_size)
    if output is None:
        from trainctl.cli.render import render_predictions

        render_predictions(_stdout(), result)
    else:
        _stderr().print(f"wrote {result.n_rows} predictions to {output}")


@app.command()
@expected_failures
def evaluate(
    run_dir: Path = typer.Argument(..., help="A run directory written by trainctl train."),
    data: Optional[Path] = typer.Option(None, "--data", help="Evaluate on this file (.csv/.npy/.npz) instead of the run's validation data."),
    batch_size: int = typer.Option(256, "--batch-size", min=1, max=1 << 24),
    max_memory: Optional[str] = typer.Option(None, "--max-memory", help=MAX_MEMORY_HELP),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Write a PNG: the confusion matrix (classifiers) or predicted vs true (regressors)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write the whole report as JSON (for machines)."),
) -> None:
    """Loss and metrics of a trained model; per-class report and confusion matrix, or MAE/RMSE/R²."""
    from trainctl.cli.render import render_evaluation_report, render_metrics_table
    from trainctl.errors import TrainctlError
    from trainctl.runs.inference import evaluation_report, open_run

    if output is not None and output.suffix.lower() != ".json":
        raise TrainctlError(f"--output {output}: the report is JSON; name the file .json")
    if plot is not None and plot.suffix.lower() != ".png":
        raise TrainctlError(f"--plot {plot}: writes a PNG; name the file .png")
    run = open_run(run_dir, _max_memory(max_memory))
    report = evaluation_report(run, data, batch_size)
    console = _stdout()
    render_metrics_table(console, report.title, report.metrics)
    render_evaluation_report(console, report)
    if plot is not None:
        from trainctl.cli.plot import write_report_png

        write_report_png(report, plot)
        _stderr().print(f"plot written to {plot}", highlight=False, soft_wrap=True)
    if output is not None:
        from trainctl.runs.atomic import atomic_write_json

        atomic_write_json(output, report.to_json())
        _stderr().print(f"report written to {output}", highlight=False, soft_wrap=True)
