"""Keras's `verbose` for the Python API and the config's `fit.verbose`, and the library's one
door to a display. 0: none; 1: the live bar in a terminal (one line per epoch otherwise);
2: one line per epoch; None ("auto"): 1 in a terminal, 0 otherwise.

The library draws nothing and never imports the CLI: the application registers its display
here. The package root (trainctl/__init__) registers the CLI's terminal display
(trainctl.cli.verbose.TerminalDisplay) as a loader, so `Sequential.fit(verbose=...)` and
`Sequential.summary()` load it on first use and `import trainctl` stays light."""

from __future__ import annotations

import sys
from collections.abc import Callable

from trainctl.errors import TrainctlError

VERBOSE_MODES = {0: "quiet", 1: "auto", 2: "plain"}


class Display:
    """What the library asks of a display (the contract a registered display implements)."""

    def progress(self, mode: str):
        """A progress callback (a Callback and a context manager) in mode 'auto' or 'plain'."""
        raise NotImplementedError

    def summary(self, model, *, weights: bool = False, print_fn: Callable[[str], None] | None = None) -> None:
        """Print the model table (to stdout, or line by line to print_fn)."""
        raise NotImplementedError


_loader: Callable[[], Display] | None = None
_display: Display | None = None


def register(loader: Callable[[], Display]) -> None:
    """Install the display `loader()` returns; it is called when a fit or a summary first
    needs a display, so registering imports nothing."""
    global _loader, _display
    _loader, _display = loader, None


def display() -> Display:
    """The registered display (loaded once)."""
    global _display
    if _display is None:
        if _loader is None:
            raise TrainctlError("no display is registered (trainctl.train.display.register): use verbose=0")
        _display = _loader()
    return _display


def display_mode(verbose: int | None, *, is_terminal: bool | None = None) -> str:
    """The progress display's mode for a Keras verbose value."""
    if verbose is None or verbose == "auto":
        terminal = sys.stdout.isatty() if is_terminal is None else is_terminal
        verbose = 1 if terminal else 0
    if isinstance(verbose, bool) or verbose not in VERBOSE_MODES:
        raise TrainctlError(f"verbose must be 0 (silent), 1 (progress bar), 2 (one line per epoch) or None (auto), got {verbose!r}")
    return VERBOSE_MODES[verbose]


def progress_display(verbose: int | None):
    """A progress callback for `verbose`, or None for silence."""
    mode = display_mode(verbose)
    return None if mode == "quiet" else display().progress(mode)


def print_summary(model, *, weights: bool = False, print_fn: Callable[[str], None] | None = None) -> None:
    """The model table of `trainctl summary`, through the registered display."""
    display().summary(model, weights=weights, print_fn=print_fn)
