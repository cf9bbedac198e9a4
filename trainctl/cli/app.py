"""The `trainctl` command: thin typer commands that parse, call the library and render.

Expected failures (TrainctlError) print one red line on stderr and exit 1; usage errors
exit 2 (typer); anything else is a bug and shows a traceback. The app and the shared
helpers are in common.py, the commands in commands/ (one module per group, imported here
in the order `trainctl --help` lists them).
"""

from __future__ import annotations

import gc

from trainctl.cli import common
from trainctl.cli.common import app, expected_failures
from trainctl.cli.commands import training, models, project, results, interop  # noqa: F401  (registers the commands)

__all__ = ["app", "expected_failures", "main"]


def main() -> None:
    """The console script (and `python -m trainctl`): the app, then an exit without Python's
    last collection over every object. A warm `trainctl train` holds ~100k tracked objects,
    numba's and pydantic's mostly, and that pass took 0.10-0.12 s of its 0.65 s (bench/
    startup_time.py). Frozen, they are left to the exit. Objects freed by reference count
    are still finalised at shutdown as before; only garbage in cycles is not collected."""
    common.owns_process = True
    try:
        app(prog_name="trainctl")
    finally:
        gc.freeze()
