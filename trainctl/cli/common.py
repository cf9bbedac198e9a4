"""The typer app every command registers on, and what the commands share: the
expected-failure wrapper (TrainctlError → one red line on stderr, exit 1), consoles,
thread and memory options.

Module import stays light (no numpy, no numba) so `trainctl --help` is instant; each
command imports what it needs.
"""

from __future__ import annotations

import functools
import os
from enum import Enum
from typing import Callable, Optional

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

        from trainctl.cli.collector import command_collections
        from trainctl.errors import TrainctlError

        # idle OpenBLAS workers sleep at once instead of spinning beside trainctl's own kernels
        # (read when numpy loads; the thread counts themselves are set through threadpoolctl)
        os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "1")
        # A warning is one line for the user (a damaged checkpoint or kernel cache), not a source excerpt.
        warnings.formatwarning = lambda message, category, filename, lineno, line=None: f"warning: {message}\n"
        with command_collections():
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
