"""history.csv cells: how an epoch's logs are written and read back."""

from __future__ import annotations

import csv
import io
from typing import Any

import numpy as np

from trainctl.errors import ArtifactError


def _format_cell(key: str, value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool):
        raise TypeError(f"history value {key}={value!r}: booleans are not history values")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)  # shortest text that reads back to the same float
    raise TypeError(f"history value {key}={value!r}: expected a number")


def _parse_cell(text: str) -> int | float:
    try:
        return int(text)
    except ValueError:
        return float(text)


def _parse_history(data: bytes, source: str) -> tuple[list[str], list[dict[str, int | float]]]:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ArtifactError(f"{source}: not a UTF-8 CSV file (bad byte at offset {exc.start})") from exc
    rows = list(csv.reader(io.StringIO(text, newline="")))
    if not rows:
        return [], []
    columns = rows[0]
    if not columns or columns[0] != "epoch" or len(set(columns)) != len(columns):
        raise ArtifactError(f"{source}:1: bad header {columns!r}: expected 'epoch' first and unique names")
    out: list[dict[str, int | float]] = []
    for line_no, cells in enumerate(rows[1:], start=2):
        if len(cells) != len(columns):
            raise ArtifactError(f"{source}:{line_no}: expected {len(columns)} fields, found {len(cells)}")
        row: dict[str, int | float] = {}
        for key, cell in zip(columns, cells):
            if cell == "":
                continue
            try:
                row[key] = _parse_cell(cell)
            except ValueError as exc:
                raise ArtifactError(f"{source}:{line_no}: {key}: not a number: {cell!r}") from exc
        if not isinstance(row.get("epoch"), int):
            raise ArtifactError(f"{source}:{line_no}: epoch must be an integer")
        out.append(row)
    return columns, out
