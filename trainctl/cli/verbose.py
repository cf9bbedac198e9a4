"""The CLI's terminal display for the Python API: what `Sequential.fit(verbose=...)` and
`Sequential.summary()` show. The library never imports this module: it asks
trainctl.train.display, where the package root registers `TerminalDisplay` (the verbose
values' meaning, VERBOSE_MODES and display_mode, lives there too)."""

from __future__ import annotations

from trainctl.train.display import VERBOSE_MODES, Display, display_mode

__all__ = ["VERBOSE_MODES", "TerminalDisplay", "describe", "display_mode"]


class TerminalDisplay(Display):
    """The library's Display on stdout, with the CLI's rendering."""

    def progress(self, mode: str):
        """A ProgressDisplay callback on stdout in `mode` ('auto' or 'plain')."""
        from trainctl.cli.consoles import stdout_console
        from trainctl.cli.render import ProgressDisplay

        return ProgressDisplay(stdout_console(), mode)

    def summary(self, model, *, weights: bool = False, print_fn=None) -> None:
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
