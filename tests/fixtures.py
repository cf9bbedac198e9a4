"""Helpers many test files share: the tiny teacher config, writing a file, reading the CLI's tables.

The tiny teacher classifier most tests train: one place for its config (issue 9, item 8).

    teacher_config()                                   # the 64-sample, 4-feature default
    teacher_config(n_features=6, n_samples=300, fit="{epochs: 3, batch_size: 32}")

Dense(relu) → [extra layers] → Dense(softmax) on the `teacher` generator (a random teacher
network labels Gaussian inputs), categorical cross-entropy. Each keyword is one line's
value; the layout is fixed, so tests that point at a line:col of the text stay valid. The
`teacher_yaml` fixture (tests/conftest.py) writes it to a file.
"""

from __future__ import annotations

import re
from pathlib import Path


def write(directory: Path, name: str, text: str) -> Path:
    """`text` into `directory / name` (UTF-8, as trainctl reads configs); the file's path."""
    path = Path(directory) / name
    path.write_text(text, encoding="utf-8")
    return path


def metrics_table(text: str) -> str:
    """`trainctl evaluate`'s output up to its per-class / per-target report: the metrics table."""
    return re.split(r"^per (?:class|target)", text, flags=re.M)[0]


def table_rows(text: str) -> list[list[str]]:
    """The cells of every rich table row in `text` (header rows included), whitespace stripped."""
    rows = []
    for line in text.splitlines():
        for bar in ("┃", "│"):
            if line.lstrip().startswith(bar):
                rows.append([cell.strip() for cell in line.strip().split(bar)[1:-1]])
    return rows


def teacher_source(n_samples: int = 64, n_features: int = 4, n_classes: int = 3, hidden: int | None = 4) -> str:
    """The `data.train` mapping of the teacher generator, in flow style."""
    width = "" if hidden is None else f", hidden: {hidden}"
    return f"{{generator: teacher, n_samples: {n_samples}, n_features: {n_features}, n_classes: {n_classes}{width}}}"


def teacher_config(*, name: str = "small", seed: int | None = 0, units: int = 8, activation: str = "relu", n_features: int = 4,
                   n_classes: int = 3, hidden: int | None = 4, n_samples: int = 64,
                   layers: tuple[str, ...] = (), optimizer: str = "{type: adam, learning_rate: 0.01}",
                   metrics: str = "[accuracy]", train: str | None = None, data: tuple[str, ...] = (),
                   fit: str = "{epochs: 1, batch_size: 16}", header: str = "", tail: str = "") -> str:
    """The config text. `layers` are flow mappings put between the two dense layers, `train`
    another `data.train` source than the teacher's (flow style, or block lines starting with a
    newline), `data` extra lines of the data section (`validation_split: 0.25`), `fit` the fit
    section's value (flow style or block lines), `header` comment lines first and `tail`
    sections after fit (e.g. callbacks)."""
    lines = [header.rstrip("\n")] if header else []
    lines += [f"name: {name}"] + ([f"seed: {seed}"] if seed is not None else [])
    lines += ["model:", "  layers:", f"    - {{type: dense, units: {units}, activation: {activation}, input_shape: [{n_features}]}}"]
    lines += [f"    - {layer}" for layer in layers]
    lines += [f"    - {{type: dense, units: {n_classes}, activation: softmax}}",
              f"optimizer: {optimizer}", "loss: categorical_crossentropy"]
    lines += [f"metrics: {metrics}"] if metrics else []
    train = teacher_source(n_samples, n_features, n_classes, hidden) if train is None else train
    lines += ["data:", f"  train:{_block_or_flow(train)}"]
    lines += [f"  {line}" for line in data]
    lines += [f"fit:{_block_or_flow(fit)}"]
    return "\n".join(lines) + "\n" + tail


def _block_or_flow(value: str) -> str:
    """A mapping's value after its key: block lines (starting with a newline) as they are, a
    flow value after a space."""
    return value if value.startswith("\n") else f" {value}"
