"""The two consoles every command (and the Python API's display) writes to."""

from __future__ import annotations

import os


def stderr_console():
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)


def stdout_console():
    from rich.console import Console

    console = Console(highlight=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        # piped or redirected: rich would assume 80 columns and cut table cells with "…"
        console = Console(highlight=False, width=200)
    return console
