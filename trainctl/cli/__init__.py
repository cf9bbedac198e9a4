"""The command line: thin typer commands over the library, and the terminal rendering.

Nothing under trainctl/ outside this package imports it (or rich)."""

import os as _os

# pydantic looks for plugins in every installed distribution's entry points when it builds its
# first model: 9 ms of a warm `trainctl train` here, more in a large environment. The only
# pydantic models the command builds are its own config's, which no plugin needs to see.
_os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")

from trainctl.cli.app import app, main  # noqa: E402  (after the environment it reads)

__all__ = ["app", "main"]
