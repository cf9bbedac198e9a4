"""`trainctl train`: a run from a config (or a resumed run), with its live progress."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

from trainctl.cli import collector
from trainctl.cli.common import (
    MAX_MEMORY_HELP, SET_HELP, LogFormat, _max_memory, _set_threads, _stderr, _stdout, _usage_error,
    app, expected_failures
)


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
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="The most BLAS threads (default 1): training times its steps at N and at 1 and keeps the faster (on an idle machine 2 threads were 1.08-1.18x faster on every row of bench/train_speed.py; beside a busy core, slower)."),
    keep_denormals: bool = typer.Option(False, "--keep-denormals", help="Keep IEEE denormal arithmetic (default: flush to zero, as torch.set_flush_denormal; same as --set fit.flush_denormals=false)."),
    runs_root: Path = typer.Option(Path("runs"), "--runs-root", help="Where default run directories go."),
    resume: Optional[Path] = typer.Option(None, "--resume", help="Continue this interrupted run directory from its newest checkpoint."),
    force: bool = typer.Option(False, "--force", help="With --resume: accept a config that differs from the run's, or restart a run whose checkpoints are gone."),
    checkpoint_every: Optional[int] = typer.Option(None, "--checkpoint-every", min=1, help="Also checkpoint every N optimizer steps (always: every epoch)."),
    keep_checkpoints: Optional[int] = typer.Option(None, "--keep-checkpoints", min=1, help="Resume checkpoints kept (default: 3 while training, the last once the run finishes)."),
    max_memory: Optional[str] = typer.Option(None, "--max-memory", help=MAX_MEMORY_HELP),
) -> None:
    """Train a model from a YAML config and write a run directory (or --resume one)."""
    with collector.paused_until_training():  # until the fit's TrainingBegins callback
        _train(config, set_, out, init_from, seed, quiet, log_format, print_config, threads, keep_denormals,
               runs_root, resume, force, checkpoint_every, keep_checkpoints, max_memory)


def _train(config, set_, out, init_from, seed, quiet, log_format, print_config, threads, keep_denormals,
           runs_root, resume, force, checkpoint_every, keep_checkpoints, max_memory) -> None:
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
                                          callbacks=[display, collector.training_begins_callback()],
                                          checkpoint_every=checkpoint_every,
                                          keep_checkpoints=keep_checkpoints, handle_signals=True, warn=warn,
                                          max_memory=memory_limit)
            else:
                outcome = train_from_config(loaded, out=out, runs_root=runs_root, init_from=init_from,
                                            callbacks=[display, collector.training_begins_callback()],
                                            checkpoint_every=checkpoint_every,
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
