"""Models in and out: export (tfjs, keras, onnx) and import."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from trainctl.cli.common import _stderr, app, expected_failures


@app.command()
@expected_failures
def export(
    run_dir: Path = typer.Argument(..., help="A run directory (or a TF.js model.json / Keras .keras file)."),
    format: Optional[str] = typer.Option(None, "--format", "-f", help="tfjs, keras or onnx (default: from --out: a folder or .json → tfjs, .keras, .onnx)."),
    out: Path = typer.Option(..., "--out", "-o", help="Where to write: a folder (tfjs model.json + shards), a .keras or an .onnx file."),
    include_optimizer: bool = typer.Option(False, "--include-optimizer", help="tfjs: also the optimizer state, so TF.js continues training where this run stopped."),
) -> None:
    """Write the trained model for TensorFlow.js (tf.loadLayersModel), Keras 3 or ONNX."""
    from trainctl.runs.interop import export_run

    result = export_run(run_dir, format, out, include_optimizer=include_optimizer)
    _stderr().print(f"wrote {result.format} model {result.path} ({result.note})", highlight=False, soft_wrap=True)


@app.command("import")
@expected_failures
def import_(
    file: Path = typer.Argument(..., help="A TF.js model.json (with its weight shards) or a Keras .keras file."),
    out: Path = typer.Option(..., "--out", "-o", help="The run directory to write (absent or empty)."),
    data: Optional[Path] = typer.Option(None, "--data", help="An .npz (x, y) the written config trains on (default: generated data of the model's shapes)."),
) -> None:
    """Make a run directory from a TF.js or Keras model: config.yaml, model, weights."""
    from trainctl.runs.interop import import_to_run

    path = import_to_run(file, out, data_path=data)
    _stderr().print(f"wrote run directory {path}; continue training with: trainctl train {path}/config.yaml "
                    f"--init-from {path}", highlight=False, soft_wrap=True)
