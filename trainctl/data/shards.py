"""Shard directories: .csv or 2-D .npy files with the same columns, read in name order."""

from __future__ import annotations

import glob
from pathlib import Path
from typing import Iterator

from trainctl.data.files import Chunk
from trainctl.errors import DataError


class ShardTable:
    """A directory of .csv or 2-D .npy shards with the same columns, read in name order."""

    def __init__(self, directory: Path, shown: str, pattern: str | None, target, features, weight, delimiter: str, chunk_rows: int = 65536, **csv_options):
        if not directory.exists():
            raise DataError(f"{shown}: no such directory (looked for {directory})")
        if not directory.is_dir():
            raise DataError(f"{shown}: is a file; shards: expects a directory")
        if pattern is None:
            pattern = "*.csv" if glob.glob(str(directory / "*.csv")) else "*.npy"
        paths = sorted(Path(p) for p in glob.glob(str(directory / pattern)))
        if not paths:
            raise DataError(f"{shown}: no shards matching {pattern!r}")
        from trainctl.data.npy import NpyTable
        from trainctl.data.readers import CsvTable

        self.tables = []
        for path in paths:
            name = f"{shown.rstrip('/')}/{path.name}"
            if path.suffix == ".csv":
                self.tables.append(CsvTable(path, name, target, features, weight, delimiter, **csv_options))
            elif path.suffix == ".npy":
                self.tables.append(NpyTable(path, name, target, features, weight, chunk_rows))
            else:
                raise DataError(f"{name}: shards must be .csv or .npy files")
        first = self.tables[0]
        for table in self.tables[1:]:
            if table.feature_names != first.feature_names or table.target_names != first.target_names:
                raise DataError(f"{table.shown}: columns differ from {first.shown}")
            if table.string_labels != first.string_labels:
                raise DataError(f"{table.shown}: target column is text here but numeric in {first.shown}")
        self.feature_names, self.target_names = first.feature_names, first.target_names
        self.row_shape = (len(self.feature_names),)
        self.string_labels = first.string_labels
        self.layout = getattr(first, "layout", [(n, "numeric", i) for i, n in enumerate(first.feature_names)])
        self.needs_encoding = getattr(first, "needs_encoding", False)
        self.specs = getattr(first, "specs", {})

    def chunks(self) -> Iterator[Chunk]:
        for table in self.tables:
            yield from table.chunks()
