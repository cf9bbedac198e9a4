"""The command line: thin typer commands over the library, and the terminal rendering.

Nothing under trainctl/ outside this package imports it (or rich)."""

from trainctl.cli.app import app

__all__ = ["app"]
