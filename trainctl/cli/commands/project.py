"""Starting a project: `trainctl init` (a starter config) and `trainctl schema` (the JSON schema)."""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from trainctl.cli.common import _stderr, app, expected_failures


class Task(str, Enum):
    classification = "classification"
    regression = "regression"


@app.command()
@expected_failures
def init(
    path: Path = typer.Argument(Path("trainctl.yaml"), help="Where to write the config."),
    task: Optional[Task] = typer.Option(None, "--task", help="classification or regression (default: from the CSV's target, else classification)."),
    csv: Optional[Path] = typer.Option(None, "--csv", help="Start from this CSV (a header row names the columns)."),
    target: Optional[str] = typer.Option(None, "--target", help="The CSV column to predict (default: the last)."),
    name: Optional[str] = typer.Option(None, "--name", help="The run name (default: from the file name)."),
    force: bool = typer.Option(False, "--force", help="Overwrite PATH if it exists."),
) -> None:
    """Write a commented starter config that trains as written (for a CSV with --csv)."""
    from trainctl.config import load_config
    from trainctl.config.starter import starter_config
    from trainctl.errors import TrainctlError
    from trainctl.runs.atomic import atomic_write_text

    if path.exists() and not force:
        raise TrainctlError(f"{path}: already exists; pass --force to overwrite it")
    text = starter_config(path, task=task.value if task else None, csv_path=csv, target=target, name=name,
                          schema_path=_shipped_schema())
    atomic_write_text(path, text)
    load_config(path)  # the written file must load and validate as it stands
    _stderr().print(f"wrote {path}; train it with: trainctl train {path}", highlight=False, soft_wrap=True)


def _shipped_schema() -> Optional[Path]:
    """The repository's schema file, when trainctl runs from a checkout (editable install)."""
    from trainctl.config.jsonschema import SCHEMA_FILE

    candidate = Path(__file__).resolve().parents[3] / SCHEMA_FILE  # trainctl/cli/commands/ → the checkout
    return candidate if candidate.is_file() else None


@app.command()
@expected_failures
def schema(
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write the schema to this file (default: print it)."),
) -> None:
    """The config's JSON Schema, for editors (# yaml-language-server: $schema=FILE)."""
    import json

    from trainctl.config.jsonschema import config_json_schema

    text = json.dumps(config_json_schema(), indent=2) + "\n"
    if out is None:
        sys.stdout.write(text)
        return
    from trainctl.runs.atomic import atomic_write_text

    atomic_write_text(out, text)
    _stderr().print(f"wrote {out}; point a config at it with: # yaml-language-server: $schema={out}",
                    highlight=False, soft_wrap=True)
