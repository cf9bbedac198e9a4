"""The CSV reader's byte-level helpers and its slow path.

Blocks of the file are cut at row ends outside quotes so pyarrow parses each on its own; when
pyarrow refuses a block, `explain` scans the file with the csv module to name the line, the
data row and the column (pyarrow's messages name neither)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np

from trainctl.data.files import excerpt
from trainctl.errors import DataError


def explain(self, first_row: int, arrow_message: str):
    """Scan the file with the csv module from the top and raise the first problem at or
    after data row `first_row` (0-based; earlier rows were parsed). Never returns."""
    import csv

    numbers = set(self._number_columns()) if self.n_columns is not None else set()
    fill_cols = {c for c in getattr(self, "numeric_features", []) if self.fills.get(c) is not None}
    categorical = set(getattr(self, "categorical", []))
    text_target = self.target_cols[0] if getattr(self, "string_labels", False) else None
    missing = set(self.missing_values)
    expected = self.n_columns
    try:
        with open(self.path, "r", encoding=self.encoding, newline="") as f:
            reader = csv.reader(f, delimiter=self.delimiter, quotechar='"')
            row, line = -1 if self.header else 0, 0
            header_seen = not self.header
            for cells in reader:
                start_line, line = line + 1, reader.line_num
                if not cells:
                    continue
                if not header_seen:
                    header_seen = True
                    expected = expected or len(cells)
                    row = 0
                    continue
                row += 1
                if row <= first_row:
                    continue

                def at(col: int | None = None) -> str:
                    text = f"{self.shown}:{start_line}: row {row}"
                    return text if col is None else text + f", column {self.columns[col]!r}"

                if len(cells) != expected:
                    raise DataError(f"{at()}: has {len(cells)} columns, expected {expected}")
                if self.n_columns is None:
                    continue
                for col in sorted(numbers | categorical | ({text_target} if text_target is not None else set())):
                    cell = cells[col].strip()
                    if col == text_target:
                        if cell == "" or cell in missing:
                            raise DataError(f"{at()}: empty class label in column {self.columns[col]!r}")
                        continue
                    if cell in missing:
                        if col in fill_cols or (col in categorical and self.fills.get(col) is not None):
                            continue
                        what = "empty cell" if cell == "" else f"missing value {cell!r}"
                        hint = " (set fill: mean|median|constant for this column to fill it)" if col in self.feature_cols and cell != "" else ""
                        raise DataError(f"{at(col)}: {what}{hint}")
                    if col in categorical:
                        continue
                    try:
                        if "_" in cell:
                            raise ValueError(cell)
                        value = float(cell)
                    except ValueError:
                        hint = " (features must be numeric)" if col in self.feature_cols else ""
                        raise DataError(f"{at(col)}: {excerpt(cell)} is not a number{hint}") from None
                    with np.errstate(over="ignore"):
                        value32 = np.float32(value)
                    if not np.isfinite(value32) and not (col in fill_cols and np.isnan(value32)):
                        kind = "NaN" if np.isnan(value32) else ("inf" if value32 > 0 else "-inf")
                        raise DataError(f"{at(col)}: value is {kind}; data must be finite")
    except UnicodeDecodeError as error:
        raise self._not_text(error) from None
    except csv.Error as error:
        raise DataError(f"{self.shown}:{line}: {error}") from None
    raise DataError(f"{self.shown}: {arrow_message}")


def _row_ends(data: bytes) -> np.ndarray:
    """Offsets just past each newline of `data` that is outside double quotes (the block
    starts outside quotes: every block is cut at such a point)."""
    raw = np.frombuffer(data, dtype=np.uint8)
    newlines = np.flatnonzero(raw == 10)
    if not newlines.size:
        return newlines
    quotes = np.flatnonzero(raw == 34)
    if not quotes.size:
        return newlines + 1
    return newlines[(np.searchsorted(quotes, newlines) & 1) == 0] + 1  # an even number of quotes before it


def _last_row_end(data: bytes) -> int:
    """Offset just past the last newline of `data` outside double quotes (0: none). Without a
    quote in the block that is one rfind; only quoted blocks pay for the full scan."""
    if data.find(b'"') == -1:
        return data.rfind(b"\n") + 1
    ends = _row_ends(data)
    return int(ends[-1]) if ends.size else 0


def _row_blocks(path: Path, header: bool, block_bytes: int) -> Iterator[bytes]:
    """The file's data rows in blocks of about `block_bytes`, each ending at a row end
    (bytes: a pyarrow buffer over a memoryview aborted at exit now and then); with `header`, the first non-blank row is left out."""
    pending = b""
    skip_header = header
    with open(path, "rb") as f:
        while True:
            block = f.read(block_bytes)
            data = pending + block if pending else block
            if not block:
                if not skip_header and data and not data.isspace():
                    yield data  # the last row, without a newline
                return
            if skip_header:
                start = next((int(e) for e in _row_ends(data) if not data[:e].isspace()), None)
                if start is None:  # only blank lines (or a part of the header) so far
                    pending = data
                    continue
                data, skip_header = data[start:], False
            cut = _last_row_end(data)
            if cut == 0:
                pending = data
                continue
            if not data.isspace():
                yield data[:cut]
            pending = data[cut:]
