"""The `trainctl` command: thin typer commands that parse, call the library and render.

Module import stays light (no numpy, no numba) so `trainctl --help` is instant; each
command imports what it needs. Expected failures (TrainctlError) print one red line on
stderr and exit 1; usage errors exit 2 (typer); anything else is a bug and shows a traceback.
"""

from __future__ import annotations

import functools
import os
import sys
from enum import Enum
from pathlib import Path
from typing import Callable, List, Optional

import typer

app = typer.Typer(
    name="trainctl",
    help="Train neural networks described in YAML files, with numba-compiled kernels on the CPU.",
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion (bash, zsh, fish, powershell)
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(value: bool) -> None:
    if value:
        from trainctl import __version__

        typer.echo(f"trainctl {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: bool = typer.Option(False, "--version", "-V", callback=_print_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """Train neural networks described in YAML files, with numba-compiled kernels on the CPU."""


class LogFormat(str, Enum):
    text = "text"
    jsonl = "jsonl"


def _stderr():
    from trainctl.cli.consoles import stderr_console

    return stderr_console()


def _stdout():
    from trainctl.cli.consoles import stdout_console

    return stdout_console()


def expected_failures(command: Callable) -> Callable:
    """Run a command; a TrainctlError becomes one red line on stderr and exit code 1."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        import warnings

        from trainctl.errors import TrainctlError

        # idle OpenBLAS workers sleep at once instead of spinning beside trainctl's own kernels
        # (read when numpy loads; the thread counts themselves are set through threadpoolctl)
        os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "1")
        # A warning is one line for the user (a damaged checkpoint or kernel cache), not a source excerpt.
        warnings.formatwarning = lambda message, category, filename, lineno, line=None: f"warning: {message}\n"

        try:
            return command(*args, **kwargs)
        except TrainctlError as error:
            from trainctl.cli.render import render_error

            render_error(_stderr(), error)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            _stderr().print("interrupted")
            raise typer.Exit(130) from None

    return wrapper


def _set_threads(threads: Optional[int]) -> None:
    """BLAS threads for this process, through threadpoolctl (trainctl/train/runtime.py):
    --threads N, else the measured default (DEFAULT_THREADS there; the README's "Threads")."""
    from trainctl.train.runtime import DEFAULT_THREADS, set_threads

    set_threads(threads or DEFAULT_THREADS)


def _usage_error(message: str, usage: str = "train [OPTIONS] CONFIG") -> typer.Exit:
    """A usage mistake the parser cannot see (options that exclude each other): exit code 2."""
    _stderr().print(f"Usage: trainctl {usage}\nError: {message}", highlight=False, markup=False)
    return typer.Exit(2)


MAX_MEMORY_HELP = ("Refuse to start when the estimated peak memory passes this (2GiB, 512MiB; "
                   "default: the memory available now).")


def _max_memory(text: Optional[str]) -> Optional[int]:
    if text is None:
        return None
    from trainctl.runs.budget import parse_size

    return parse_size(text)


SET_HELP = "Override a config key: --set fit.epochs=10, --set model.layers.0.units=64 (repeatable)."


@app.command()
@expected_failures
def train(
    config: Optional[Path] = typer.Argument(None, help="The YAML config to train (with --resume: optional, default the run's own)."),
    set_: List[str] = typer.Option([], "--set", help=SET_HELP),
    out: Optional[Path] = typer.Option(None, "--out", help="Run directory (default runs/<name>/<timestamp>)."),
    init_from: Optional[Path] = typer.Option(None, "--init-from", help="Start from these weights (.safetensors or a run directory)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Override the config's seed."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress display."),
    log_format: LogFormat = typer.Option(LogFormat.text, "--log-format", help="text (human) or jsonl (one JSON event per epoch)."),
    print_config: bool = typer.Option(False, "--print-config", help="Print the resolved config and exit."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="BLAS threads (default 1: measured faster or equal on every bench row, quiet or beside other load)."),
    keep_denormals: bool = typer.Option(False, "--keep-denormals", help="Keep IEEE denormal arithmetic (default: flush to zero, as torch.set_flush_denormal; same as --set fit.flush_denormals=false)."),
    runs_root: Path = typer.Option(Path("runs"), "--runs-root", help="Where default run directories go."),
    resume: Optional[Path] = typer.Option(None, "--resume", help="Continue this interrupted run directory from its newest checkpoint."),
    force: bool = typer.Option(False, "--force", help="With --resume: accept a config that differs from the run's, or restart a run whose checkpoints are gone."),
    checkpoint_every: Optional[int] = typer.Option(None, "--checkpoint-every", min=1, help="Also checkpoint every N optimizer steps (always: every epoch)."),
    keep_checkpoints: Optional[int] = typer.Option(None, "--keep-checkpoints", min=1, help="Resume checkpoints kept (default: 3 while training, the last once the run finishes)."),
    max_memory: Optional[str] = typer.Option(None, "--max-memory", help=MAX_MEMORY_HELP),
) -> None:
    """Train a model from a YAML config and write a run directory (or --resume one)."""
    from trainctl.cli.render import ProgressDisplay, render_summary_line
    from trainctl.config import config_to_yaml, load_config

    overrides = [*set_, f"seed={seed}"] if seed is not None else set_
    if keep_denormals:
        overrides = [*overrides, "fit.flush_denormals=false"]
    memory_limit = _max_memory(max_memory)

    if resume is None and config is None:
        raise _usage_error("Missing argument 'CONFIG' (or --resume RUN_DIR to continue a run).")
    if resume is not None and (out is not None or init_from is not None):
        raise _usage_error("--resume continues a run in its own directory from its checkpoint; "
                         "drop --out and --init-from")
    if force and resume is None:
        raise _usage_error("--force only applies to --resume")
    if print_config or resume is None:
        if config is None:
            raise _usage_error("--print-config needs a CONFIG")
        loaded = load_config(config, overrides)
        if print_config:
            sys.stdout.write(config_to_yaml(loaded.config))
            return
    from trainctl.runs.train import resume_training, train_from_config
    from trainctl.train.resume import TrainingInterrupted

    console, errors = _stdout(), _stderr()
    mode = "quiet" if quiet else ("jsonl" if log_format is LogFormat.jsonl else _config_display(
        loaded.config if resume is None else None, resume, config, overrides))

    def warn(line: str) -> None:
        from rich.text import Text

        errors.print(Text(f"warning: {line}", style="yellow"), soft_wrap=True)

    _set_threads(threads)
    try:
        with ProgressDisplay(console, mode) as display:
            if resume is not None:
                outcome = resume_training(resume, config_path=config, overrides=overrides, force=force,
                                          callbacks=[display], checkpoint_every=checkpoint_every,
                                          keep_checkpoints=keep_checkpoints, handle_signals=True, warn=warn,
                                          max_memory=memory_limit)
            else:
                outcome = train_from_config(loaded, out=out, runs_root=runs_root, init_from=init_from,
                                            callbacks=[display], checkpoint_every=checkpoint_every,
                                            keep_checkpoints=keep_checkpoints, handle_signals=True,
                                            max_memory=memory_limit)
    except TrainingInterrupted as stop:
        import shlex
        import signal

        where = f"after epoch {stop.epoch + 1}" if stop.batch < 0 else f"at epoch {stop.epoch + 1}, batch {stop.batch + 1}"
        saved = f"checkpoint {stop.checkpoint}" if stop.checkpoint is not None else "no new checkpoint"
        errors.print(f"stopped by {signal.Signals(stop.signum).name} {where}; {saved}", highlight=False, soft_wrap=True)
        command = "trainctl train --resume " + shlex.quote(str(stop.run_path))
        if threads is not None:
            command += f" --threads {threads}"
        errors.print(f"resume with: {command}", highlight=False, soft_wrap=True)
        raise typer.Exit(stop.exit_code) from None
    for line in outcome.messages:
        errors.print(line, highlight=False, soft_wrap=True)
    if outcome.already_complete:
        return
    if mode != "jsonl":
        render_summary_line(console, outcome.summary_line(), str(outcome.run_dir.path))


def _config_display(config, resume: Optional[Path], config_path: Optional[Path], overrides) -> str:
    """The display the config's `fit.verbose` asks for (Keras: 0 none, 1 progress bar, 2 one
    line per epoch); --quiet and --log-format jsonl override it."""
    from trainctl.cli.verbose import VERBOSE_MODES

    if config is None:  # --resume: the config it will continue with
        from trainctl.config import load_config, load_config_text

        if config_path is not None:
            config = load_config(config_path, overrides).config
        else:
            run_config = resume / "config.yaml"
            if not run_config.is_file():
                return "auto"  # resume_training reports the missing file
            config = load_config_text(run_config.read_text(encoding="utf-8"), str(run_config), overrides).config
    return VERBOSE_MODES[config.fit.verbose]


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


class Task(str, Enum):
    classification = "classification"
    regression = "regression"


@app.command()
@expected_failures
def init(
    path: Path = typer.Argument(Path("trainctl.yaml"), help="Where to write the config."),
    task: Optional[Task] = typer.Option(None, "--task", help="classification or regression (default: from the CSV's target, else classification)."),
    csv: Optional[Path] = typer.Option(None, "--csv", help="Start from this CSV (a header row names the columns)."),
    target: Optional[str] = typer.Option(None, "--target", help="The CSV column to predict (default: the last)."),
    name: Optional[str] = typer.Option(None, "--name", help="The run name (default: from the file name)."),
    force: bool = typer.Option(False, "--force", help="Overwrite PATH if it exists."),
) -> None:
    """Write a commented starter config that trains as written (for a CSV with --csv)."""
    from trainctl.config import load_config
    from trainctl.config.starter import starter_config
    from trainctl.errors import TrainctlError
    from trainctl.runs.atomic import atomic_write_text

    if path.exists() and not force:
        raise TrainctlError(f"{path}: already exists; pass --force to overwrite it")
    text = starter_config(path, task=task.value if task else None, csv_path=csv, target=target, name=name,
                          schema_path=_shipped_schema())
    atomic_write_text(path, text)
    load_config(path)  # the written file must load and validate as it stands
    _stderr().print(f"wrote {path}; train it with: trainctl train {path}", highlight=False, soft_wrap=True)


def _shipped_schema() -> Optional[Path]:
    """The repository's schema file, when trainctl runs from a checkout (editable install)."""
    from trainctl.config.jsonschema import SCHEMA_FILE

    candidate = Path(__file__).resolve().parents[2] / SCHEMA_FILE
    return candidate if candidate.is_file() else None


@app.command()
@expected_failures
def schema(
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write the schema to this file (default: print it)."),
) -> None:
    """The config's JSON Schema, for editors (# yaml-language-server: $schema=FILE)."""
    import json

    from trainctl.config.jsonschema import config_json_schema

    text = json.dumps(config_json_schema(), indent=2) + "\n"
    if out is None:
        sys.stdout.write(text)
        return
    from trainctl.runs.atomic import atomic_write_text

    atomic_write_text(out, text)
    _stderr().print(f"wrote {out}; point a config at it with: # yaml-language-server: $schema={out}",
                    highlight=False, soft_wrap=True)


def main() -> None:  # pragma: no cover - the console script entry point is `app`
    app()


@app.command()
@expected_failures
def plot(
    run_dir: Path = typer.Argument(..., help="A run directory written by trainctl train."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="PNG file to write (default RUN_DIR/plot.png)."),
    terminal: bool = typer.Option(False, "--terminal", help="Draw the curves in the terminal instead of a PNG."),
) -> None:
    """Loss and metric curves (train and validation) and recorded weight trajectories; for an
    experiment directory, the comparison's PNGs (as `compare --plot`)."""
    if (run_dir / "experiment.json").is_file():
        from trainctl.experiment.compare import compare_runs

        for written in _compare_plots(compare_runs([run_dir]), [run_dir], out):
            typer.echo(f"wrote {written}")
        return
    import shutil

    from trainctl.cli.plot import INSTALL_HINT, plot_run

    console = _stdout()
    color = console.is_terminal and console.color_system is not None  # NO_COLOR and pipes: plain text
    width = min(max(shutil.get_terminal_size((80, 24)).columns - 16, 40), 120)
    text = plot_run(run_dir, out, terminal, width=width, color=color)
    if text.startswith(INSTALL_HINT):  # the fallback's note goes to stderr, the charts to stdout
        _stderr().print(INSTALL_HINT, highlight=False, markup=False, soft_wrap=True)
        text = text[len(INSTALL_HINT) + 1:]
    sys.stdout.write(text + "\n")


def _compare_plots(comparison, paths: List[Path], out: Optional[Path]) -> list[Path]:
    """The comparison's PNGs; an experiment directory's own study is drawn too."""
    from trainctl.cli.compare_plots import write_compare_plots
    from trainctl.experiment.search import load_study_of

    experiment_dir = paths[0] if len(paths) == 1 and (paths[0] / "experiment.json").is_file() else None
    folder = out or (experiment_dir / "plots" if experiment_dir is not None else Path("compare-plots"))
    study = load_study_of(experiment_dir) if experiment_dir is not None else None
    return write_compare_plots(comparison, folder, study)


@app.command()
@expected_failures
def experiment(
    file: Path = typer.Argument(..., help="An experiment YAML file (base config, grid/random, seeds, metric)."),
    workers: int = typer.Option(2, "--workers", min=1, help="Worker processes of the local dask cluster."),
    scheduler: Optional[str] = typer.Option(None, "--scheduler", help="Address of an existing dask scheduler (tcp://host:8786)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="List the runs and their overrides; run nothing."),
    out: Optional[Path] = typer.Option(None, "--out", help="Experiment directory (default experiments/<name>)."),
    dashboard: bool = typer.Option(False, "--dashboard", help="Serve the local cluster's dask dashboard on 127.0.0.1:8787 (off by default)."),
    tls_ca: Optional[Path] = typer.Option(None, "--tls-ca", help="With --scheduler tls://...: the CA file that signed the scheduler's certificate."),
    tls_cert: Optional[Path] = typer.Option(None, "--tls-cert", help="With --scheduler: this client's certificate."),
    tls_key: Optional[Path] = typer.Option(None, "--tls-key", help="With --scheduler: this client's private key."),
) -> None:
    """Run every variant of a config (grid, random search, seeds) on dask and compare them.

    The local cluster listens on 127.0.0.1 over TLS with a per-run certificate. An
    unauthenticated --scheduler address is shell access for anyone who can reach it."""
    from trainctl.experiment.runner import run_experiment
    from trainctl.experiment.security import ClusterSecurity

    if scheduler is None and any(p is not None for p in (tls_ca, tls_cert, tls_key)):
        raise _usage_error("--tls-ca/--tls-cert/--tls-key apply to --scheduler (the local cluster makes its own)",
                           "experiment [OPTIONS] FILE")
    if scheduler is not None and dashboard:
        raise _usage_error("--dashboard applies to the local cluster; a --scheduler serves its own",
                           "experiment [OPTIONS] FILE")
    security = ClusterSecurity(dashboard=dashboard, tls_ca=tls_ca, tls_cert=tls_cert, tls_key=tls_key)
    from trainctl.cli.render import ExperimentProgressLine, mean_std, render_compare_table

    console = _stdout()
    with ExperimentProgressLine(console) as progress:
        result = run_experiment(file, workers=workers, scheduler=scheduler, dry_run=dry_run, out=out,
                                progress=None if dry_run else progress, security=security)
    if dry_run:
        for run in result.runs:
            overrides = " ".join(f"{key}={value}" for key, value in run.overrides.items())
            typer.echo(f"{run.run_id}  [{run.status}]  seed={run.seed}  {overrides}")
        typer.echo(f"{len(result.runs)} runs; nothing was run (--dry-run)")
        return
    for run in result.failed:
        _stderr().print(f"[red]failed[/red] {run.run_id}: {run.error}", markup=True)
    comparison = result.comparison()
    rows, columns = comparison.table(mean_std)
    render_compare_table(console, rows, columns, sort_by=comparison.sort_column, mode=comparison.mode,
                         title=result.experiment.name)
    if result.best is not None:
        console.print(f"best run: {result.best.path}", highlight=False)
    console.print(f"results: {result.results_csv}", highlight=False)
    if result.failed:
        raise typer.Exit(1)


@app.command()
@expected_failures
def compare(
    paths: List[Path] = typer.Argument(..., help="Run directories, or an experiment directory."),
    metric: Optional[str] = typer.Option(None, "--metric", help="Rank by this logged value (default: val_loss or loss)."),
    mode: Optional[str] = typer.Option(None, "--mode", help="min or max (default: from the metric)."),
    plot: bool = typer.Option(False, "--plot", help="Also write PNGs: learning curves, and a search's history, importances, parallel coordinates."),
    plot_out: Optional[Path] = typer.Option(None, "--plot-out", help="Folder for the PNGs (default EXPERIMENT_DIR/plots, or ./compare-plots)."),
) -> None:
    """Compare finished runs in one table, best first (mean ± std over seeds)."""
    from trainctl.cli.render import mean_std, render_compare_table
    from trainctl.experiment.compare import compare_runs

    comparison = compare_runs(paths, metric=metric, mode=mode)
    rows, columns = comparison.table(mean_std)
    console = _stdout()
    render_compare_table(console, rows, columns, sort_by=comparison.sort_column, mode=comparison.mode)
    if comparison.best is not None:
        console.print(f"best run: {comparison.best.path}", highlight=False)
    if plot:
        for written in _compare_plots(comparison, paths, plot_out):
            console.print(f"wrote {written}", highlight=False)


@app.command()
@expected_failures
def export(
    run_dir: Path = typer.Argument(..., help="A run directory (or a TF.js model.json / Keras .keras file)."),
    format: Optional[str] = typer.Option(None, "--format", "-f", help="tfjs, keras or onnx (default: from --out: a folder or .json → tfjs, .keras, .onnx)."),
    out: Path = typer.Option(..., "--out", "-o", help="Where to write: a folder (tfjs model.json + shards), a .keras or an .onnx file."),
    include_optimizer: bool = typer.Option(False, "--include-optimizer", help="tfjs: also the optimizer state, so TF.js continues training where this run stopped."),
) -> None:
    """Write the trained model for TensorFlow.js (tf.loadLayersModel), Keras 3 or ONNX."""
    from trainctl.runs.interop import export_run

    result = export_run(run_dir, format, out, include_optimizer=include_optimizer)
    _stderr().print(f"wrote {result.format} model {result.path} ({result.note})", highlight=False, soft_wrap=True)


@app.command("import")
@expected_failures
def import_(
    file: Path = typer.Argument(..., help="A TF.js model.json (with its weight shards) or a Keras .keras file."),
    out: Path = typer.Option(..., "--out", "-o", help="The run directory to write (absent or empty)."),
    data: Optional[Path] = typer.Option(None, "--data", help="An .npz (x, y) the written config trains on (default: generated data of the model's shapes)."),
) -> None:
    """Make a run directory from a TF.js or Keras model: config.yaml, model, weights."""
    from trainctl.runs.interop import import_to_run

    path = import_to_run(file, out, data_path=data)
    _stderr().print(f"wrote run directory {path}; continue training with: trainctl train {path}/config.yaml "
                    f"--init-from {path}", highlight=False, soft_wrap=True)
