"""Looking at results: plot (one run), experiment (a family of runs), compare."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

from trainctl.cli.common import _stderr, _stdout, _usage_error, app, expected_failures


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
