"""Keras's `verbose` for the Python API and the config's `fit.verbose`: which progress
display a fit gets. 0: none; 1: the live bar in a terminal (one line per epoch otherwise);
2: one line per epoch; None ("auto"): 1 in a terminal, 0 otherwise.

The library reaches the display only through here, lazily, when a user asks for it from
Python (`Sequential.fit(verbose=...)`, `Sequential.summary()`)."""

from __future__ import annotations

import sys
from typing import Any

from trainctl.errors import TrainctlError

VERBOSE_MODES = {0: "quiet", 1: "auto", 2: "plain"}


def display_mode(verbose: int | None, *, is_terminal: bool | None = None) -> str:
    """The ProgressDisplay mode for a Keras verbose value."""
    if verbose is None or verbose == "auto":
        terminal = sys.stdout.isatty() if is_terminal is None else is_terminal
        verbose = 1 if terminal else 0
    if isinstance(verbose, bool) or verbose not in VERBOSE_MODES:
        raise TrainctlError(f"verbose must be 0 (silent), 1 (progress bar), 2 (one line per epoch) or None (auto), got {verbose!r}")
    return VERBOSE_MODES[verbose]


def progress_display(verbose: int | None) -> Any:
    """A ProgressDisplay callback on stdout for `verbose`, or None for silence."""
    mode = display_mode(verbose)
    if mode == "quiet":
        return None
    from trainctl.cli.consoles import stdout_console
    from trainctl.cli.render import ProgressDisplay

    return ProgressDisplay(stdout_console(), mode)


def print_summary(model, *, weights: bool = False, print_fn=None) -> None:
    """The CLI's `trainctl summary` table for a model built in Python."""
    from rich.console import Console

    from trainctl.cli.consoles import stdout_console
    from trainctl.cli.render import render_summary

    rows, totals, weight_list, extras = describe(model)
    if print_fn is None:
        render_summary(stdout_console(), rows, totals, weights=weight_list if weights else None, extras=extras)
        return
    import io

    buffer = io.StringIO()
    render_summary(Console(highlight=False, file=buffer, width=200), rows, totals,
                   weights=weight_list if weights else None, extras=extras)
    for line in buffer.getvalue().splitlines():
        print_fn(line)


def describe(model):
    """The summary of a model built in Python: as `trainctl summary`, compile choices from compile()."""
    from trainctl.runs.summary import describe_model

    return describe_model(model)
