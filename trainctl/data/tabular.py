"""Tabular features: categorical columns and missing values, fitted on the training split.

    encoder = TabularEncoder.fit(layout, specs, chunks)   # (x_numeric, text) blocks of train rows
    x = encoder.transform(x_numeric, text)                # float32 [n, encoder.width]
    data_info["tabular"] = encoder.to_json()              # saved with the run (JSON, no pickle)
    encoder = TabularEncoder.from_json(data_info["tabular"])

A CSV reader hands numeric feature columns as float32 (NaN where a cell was missing in a
column that has a fill) and categorical ones as object arrays (None where missing). The
encoder puts the features back in file order: a numeric column stays one column (missing
cells filled with the training mean, median or a constant); a categorical column becomes
one-hot columns or one index column (for an embedding layer), over a vocabulary learned
from the training split as Keras's StringLookup does: index 0 is the out-of-vocabulary slot
"[UNK]" (a value never seen in training), then the values by decreasing frequency (ties in
sorted order).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np

from trainctl.errors import DataError

OOV_TOKEN = "[UNK]"  # Keras StringLookup's oov_token


@dataclass
class ColumnEncoder:
    name: str
    kind: str  # numeric | categorical
    fill: str | None = None  # mean | median | constant | most_frequent | None
    fill_value: Any = None  # fitted (or given) replacement for a missing cell
    encoding: str = "one_hot"  # categorical: one_hot | index
    vocabulary: list[str] = field(default_factory=list)  # categorical: [OOV_TOKEN, most frequent, ...]

    @property
    def width(self) -> int:
        return len(self.vocabulary) if self.kind == "categorical" and self.encoding == "one_hot" else 1

    @property
    def output_names(self) -> list[str]:
        if self.width == 1:
            return [self.name]
        return [f"{self.name}={value}" for value in self.vocabulary]


class TabularEncoder:
    """Per-column encoders in feature order; `positions[i]` is (kind, index into x or text)."""

    def __init__(self, columns: list[ColumnEncoder], positions: list[tuple[str, int]]):
        self.columns, self.positions = columns, positions
        self.lookups = [{v: i for i, v in enumerate(c.vocabulary)} for c in columns]

    @property
    def width(self) -> int:
        return sum(c.width for c in self.columns)

    @property
    def feature_names(self) -> list[str]:
        return [name for c in self.columns for name in c.output_names]

    @property
    def input_names(self) -> list[str]:
        return [c.name for c in self.columns]

    # -- fitting

    @classmethod
    def fit(cls, layout: list[tuple[str, str, int]], specs: dict[str, Any], chunks: Iterable[tuple[np.ndarray, list | None]],
            description: str) -> "TabularEncoder":
        """Fit on the training rows. `chunks` yields (x_numeric float32 [c, n_numeric], text)."""
        sums: dict[int, float] = {}
        counts: dict[int, int] = {}
        kept: dict[int, list[np.ndarray]] = {}
        tallies: dict[int, Counter] = {}
        numeric = [(name, pos) for name, kind, pos in layout if kind == "numeric"]
        categorical = [(name, pos) for name, kind, pos in layout if kind == "categorical"]
        n_rows = 0
        for x, text in chunks:
            n_rows += len(x)
            for name, pos in numeric:
                fill = specs[name].fill if name in specs else None
                if fill in ("mean", "median"):
                    values = x[:, pos]
                    values = values[~np.isnan(values)]
                    sums[pos] = sums.get(pos, 0.0) + float(values.astype(np.float64).sum())
                    counts[pos] = counts.get(pos, 0) + len(values)
                    if fill == "median":
                        kept.setdefault(pos, []).append(values.copy())
            for name, pos in categorical:
                column = text[pos]
                present = column[column != None]  # noqa: E711 (elementwise)
                unique, n = np.unique(present.astype(str), return_counts=True)
                tally = tallies.setdefault(pos, Counter())
                tally.update(dict(zip(unique.tolist(), n.tolist())))
        if n_rows == 0:
            raise DataError(f"{description}: the training split has no rows")
        columns: list[ColumnEncoder] = []
        positions: list[tuple[str, int]] = []
        for name, kind, pos in layout:
            spec = specs.get(name)
            fill = spec.fill if spec is not None else None
            positions.append((kind, pos))
            if kind == "numeric":
                value = None
                if fill in ("mean", "median"):
                    if counts.get(pos, 0) == 0:
                        raise DataError(f"{description}: column {name!r} has no values in the training split to take the {fill} of")
                    value = sums[pos] / counts[pos] if fill == "mean" else float(np.median(np.concatenate(kept[pos])))
                elif fill == "constant":
                    value = float(spec.value)
                columns.append(ColumnEncoder(name, "numeric", fill, value))
                continue
            tally = tallies.get(pos, Counter())
            if not tally:
                raise DataError(f"{description}: categorical column {name!r} has no values in the training split")
            ordered = sorted(tally.items(), key=lambda item: (-item[1], item[0]))
            vocabulary = [OOV_TOKEN] + [value for value, _ in ordered]
            value = None
            if fill == "most_frequent":
                value = ordered[0][0]
            elif fill == "constant":
                value = str(spec.value)
            columns.append(ColumnEncoder(name, "categorical", fill, value, spec.encoding, vocabulary))
        return cls(columns, positions)

    # -- applying

    def transform(self, x: np.ndarray, text: list | None, description: str = "data") -> np.ndarray:
        """(numeric block [n, n_numeric], categorical columns) → float32 [n, width]."""
        n = len(x)
        out = np.empty((n, self.width), dtype=np.float32)
        at = 0
        for column, lookup, (kind, pos) in zip(self.columns, self.lookups, self.positions):
            if kind == "numeric":
                values = x[:, pos]
                if column.fill is not None:
                    values = np.where(np.isnan(values), np.float32(column.fill_value), values)
                elif np.isnan(values).any():
                    row = int(np.flatnonzero(np.isnan(values))[0]) + 1
                    raise DataError(f"{description}: row {row}, column {column.name!r}: missing value")
                out[:, at] = values
                at += 1
                continue
            values = text[pos]
            missing = values == None  # noqa: E711 (elementwise)
            if missing.any():
                if column.fill is None:
                    row = int(np.flatnonzero(missing)[0]) + 1
                    raise DataError(f"{description}: row {row}, column {column.name!r}: missing value")
                values = np.where(missing, column.fill_value, values)
            unique, inverse = np.unique(values.astype(str), return_inverse=True)
            index = np.array([lookup.get(u, 0) for u in unique.tolist()], dtype=np.int64)[inverse.reshape(-1)]
            if column.encoding == "index":
                out[:, at] = index
                at += 1
            else:
                block = out[:, at : at + column.width]
                block[:] = 0.0
                block[np.arange(n), index] = 1.0
                at += column.width
        return out

    # -- saving

    def to_json(self) -> dict:
        return {
            "columns": [
                {"name": c.name, "kind": c.kind, "fill": c.fill, "fill_value": c.fill_value, "encoding": c.encoding,
                 "vocabulary": c.vocabulary}
                for c in self.columns
            ],
            "positions": [list(p) for p in self.positions],
        }

    @classmethod
    def from_json(cls, data: dict) -> "TabularEncoder":
        try:
            columns = [ColumnEncoder(d["name"], d["kind"], d["fill"], d["fill_value"], d["encoding"], list(d["vocabulary"]))
                       for d in data["columns"]]
            positions = [(str(kind), int(pos)) for kind, pos in data["positions"]]
        except (KeyError, TypeError, ValueError) as error:
            raise DataError(f"saved tabular encoding is malformed ({error})") from None
        return cls(columns, positions)
