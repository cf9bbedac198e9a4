"""The `trainctl` command: thin typer commands that parse, call the library and render.

Expected failures (TrainctlError) print one red line on stderr and exit 1; usage errors
exit 2 (typer); anything else is a bug and shows a traceback. The app and the shared
helpers are in common.py, the commands in commands/ (one module per group, imported here
in the order `trainctl --help` lists them).
"""

from __future__ import annotations

from trainctl.cli import collector
from trainctl.cli.common import app, expected_failures
from trainctl.cli.commands import training, models, project, results, interop  # noqa: F401  (registers the commands)

__all__ = ["app", "expected_failures", "main"]


def main() -> None:
    """The console script (and `python -m trainctl`): the app, as the process's own command
    (collector.owning_the_process: no last collection at exit)."""
    with collector.owning_the_process():
        app(prog_name="trainctl")
