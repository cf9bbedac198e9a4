"""Pictures of a comparison: every run's learning curve overlaid (the best one highlighted),
and for a search the study's own views — optimization history, parameter importances and a
parallel-coordinate plot, drawn by Optuna's matplotlib visualisations.

    paths = write_compare_plots(comparison, out_dir, study)   # PNG paths written

matplotlib is the optional `plot` extra (pip install 'trainctl[plot]'); without it this is a
one-line error. Figures use the Agg backend; nothing is shown on screen.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from trainctl.errors import TrainctlError

INSTALL = "plots need matplotlib: pip install 'trainctl[plot]'"


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise TrainctlError(INSTALL) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _curve(run, metric: str) -> tuple[list[int], list[float]]:
    from trainctl.runs.rundir import RunDir

    try:
        history = RunDir(run.path).read_history()
    except TrainctlError:
        return [], []
    points = [(int(row["epoch"]), float(row[metric])) for row in history if metric in row]
    return [e for e, _ in points], [v for _, v in points]


def learning_curves(comparison, path: Path) -> Path:
    """Every run's metric per epoch on one axes; the best run thick, pruned runs dashed."""
    plt = _pyplot()
    best = comparison.best
    figure, axes = plt.subplots(figsize=(8, 5))
    for run in comparison.runs:
        epochs, values = _curve(run, comparison.metric)
        if not epochs:
            continue
        if best is not None and run.path == best.path:
            continue  # drawn last, on top
        style = "--" if run.status == "pruned" else "-"
        axes.plot(epochs, values, style, color="0.6", linewidth=1.0, alpha=0.8)
    if best is not None:
        epochs, values = _curve(best, comparison.metric)
        axes.plot(epochs, values, "-", color="tab:red", linewidth=2.5, label=f"best: {best.run_id}")
        axes.legend()
    axes.set_xlabel("epoch")
    axes.set_ylabel(comparison.metric)
    axes.set_title(f"{comparison.metric} per epoch, {len(comparison.runs)} runs (dashed: pruned)")
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def _study_plot(plot, study, path: Path, plt) -> Path | None:
    with warnings.catch_warnings():  # Optuna marks its matplotlib views experimental
        warnings.simplefilter("ignore")
        try:
            axes = plot(study)
        except (ValueError, RuntimeError, ZeroDivisionError):  # too few finished trials for this view
            plt.close("all")
            return None
    figure = axes.figure if hasattr(axes, "figure") else axes.flat[0].figure
    figure.set_size_inches(9, 5.5)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def write_compare_plots(comparison, out_dir: Path, study: Any = None) -> list[Path]:
    """PNGs into out_dir: curves.png, and with a study history.png, importances.png, parallel.png."""
    plt = _pyplot()
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [learning_curves(comparison, out_dir / "curves.png")]
    if study is not None:
        from optuna.visualization import matplotlib as views

        for name, plot in (("history", views.plot_optimization_history), ("importances", views.plot_param_importances),
                           ("parallel", views.plot_parallel_coordinate)):
            path = _study_plot(plot, study, out_dir / f"{name}.png", plt)
            if path is not None:
                written.append(path)
    return written
