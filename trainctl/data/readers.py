"""File readers: CSV, .npy, .npz and shard directories, read in bulk chunks.

A reader yields `Chunk`s of rows: features float32 [c, ...], numeric targets float32 [c, m]
or string labels [c], and sample weights [c]. The in-memory loader concatenates them; the
stream feeds them through its pipeline. Rows are never parsed one by one in Python: a chunk
of lines goes to numpy's C parser at once, and only when it refuses one is the chunk
scanned again to name the exact line and column.
"""

from __future__ import annotations

import glob
import math
import os
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from trainctl.errors import DataError
from trainctl.registry import did_you_mean

CSV_CHUNK_BYTES = 8 << 20  # lines handed to the parser at a time: big enough to amortise, small in RAM


@dataclass
class Chunk:
    x: np.ndarray  # float32 [c, ...]
    targets: np.ndarray | None = None  # float32 [c, m]
    labels: np.ndarray | None = None  # str [c] (string class labels) — instead of targets
    weights: np.ndarray | None = None  # float32 [c]

    def __len__(self) -> int:
        return len(self.x)


def resolve_path(path: str, base_dir: Path) -> Path:
    """`path` as written in the config, relative to the config file's directory."""
    p = Path(os.path.expanduser(path))
    return p if p.is_absolute() else Path(base_dir) / p


def _require_file(path: Path, shown: str) -> None:
    if not path.exists():
        raise DataError(f"{shown}: no such file (looked for {path})")
    if path.is_dir():
        raise DataError(f"{shown}: is a directory, expected a file")


def excerpt(text: str, limit: int = 24) -> str:
    """A short, printable quote of a cell from a file that may be anything (a config pointed at
    the wrong file must not copy that file's lines into the message): control characters
    escaped, at most `limit` characters."""
    text = text.encode("unicode_escape", "backslashreplace").decode("ascii")
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")


def not_utf8(shown: str, path: Path) -> DataError:
    """The DataError for a file that is not UTF-8, naming the line and byte of the first bad byte."""
    import codecs

    decoder = codecs.getincrementaldecoder("utf-8")()
    line, where, byte = 1, "", "?"
    with open(path, "rb") as f:
        while True:
            block = f.read(1 << 20)
            try:
                decoder.decode(block, final=not block)
            except UnicodeDecodeError as error:
                # error.start counts from the decoder's pending bytes + this block
                start = max(0, error.start - (len(error.object) - len(block)))
                line += block.count(b"\n", 0, start)
                where, byte = f":{line}", block[start:start + 1].hex() or "?"
                break
            if not block:
                break
            line += block.count(b"\n")
    return DataError(f"{shown}{where}: not UTF-8 text (byte 0x{byte}); save the file as UTF-8")


def _check_finite(block: np.ndarray, shown: str, where) -> None:
    """DataError naming the first NaN/inf; `where(row) -> str` locates a row of `block`."""
    finite = np.isfinite(block)
    if finite.all():
        return
    flat = block.reshape(len(block), -1)
    row, col = np.argwhere(~finite.reshape(len(block), -1))[0]
    value = flat[row, col]
    kind = "NaN" if np.isnan(value) else ("inf" if value > 0 else "-inf")
    raise DataError(f"{shown}{where(int(row), int(col))}: value is {kind}; data must be finite")


# ---------------------------------------------------------------- CSV


class CsvTable:
    """One CSV file: header, column selection, chunked numeric parsing.

    target/features/weight are column names or 0-based indices (negative from the end).
    """

    def __init__(
        self,
        path: Path,
        shown: str,
        target,
        features: Sequence | None,
        weight,
        delimiter: str = ",",
        header: bool = True,
    ):
        _require_file(path, shown)
        self.path, self.shown, self.delimiter, self.header = path, shown, delimiter, header
        try:
            with open(path, "r", encoding="utf-8", newline=None) as f:
                first = f.readline(1 << 20)
                while first and not first.strip():
                    first = f.readline(1 << 20)
        except UnicodeDecodeError:
            raise not_utf8(shown, path) from None
        if "\0" in first:
            raise DataError(f"{shown}: not a text file (it holds NUL bytes)")
        if not first.strip():
            raise DataError(f"{shown}: file is empty")
        cells = [c.strip().strip('"').strip() for c in first.rstrip("\r\n").split(delimiter)]
        self.n_columns = len(cells)
        self.columns = cells if header else [str(i) for i in range(len(cells))]
        targets = [] if target is None else (list(target) if isinstance(target, list) else [target])
        self.target_cols = [self._column(c) for c in targets]
        self.weight_col = None if weight is None else self._column(weight)
        taken = set(self.target_cols) | ({self.weight_col} if self.weight_col is not None else set())
        if features is None:
            self.feature_cols = [i for i in range(self.n_columns) if i not in taken]
        else:
            self.feature_cols = [self._column(c) for c in features]
            both = sorted(set(self.feature_cols) & taken)
            if both:
                raise DataError(f"{shown}: column {excerpt(self.columns[both[0]])} is both a feature and a target/weight")
        if not self.feature_cols:
            raise DataError(f"{shown}: no feature columns left after taking the target")
        self.feature_names = [self.columns[i] for i in self.feature_cols]
        self.target_names = [self.columns[i] for i in self.target_cols]
        self.string_labels = self._target_is_text()

    def _column(self, column) -> int:
        if isinstance(column, bool) or not isinstance(column, (int, str)):
            raise DataError(f"{self.shown}: a column is a name or an index, got {column!r}")
        if isinstance(column, int):
            if not -self.n_columns <= column < self.n_columns:
                raise DataError(f"{self.shown}: column index {column} out of range; the file has {self.n_columns} columns")
            return column % self.n_columns
        if column in self.columns:
            return self.columns.index(column)
        if not self.header:
            raise DataError(f"{self.shown}: the file has no header (header: false), so name columns by index, not {column!r}")
        hint = did_you_mean(column, self.columns)
        if hint:
            suffix = f"; did you mean {excerpt(hint)}?"
        elif len(self.columns) <= 20 and sum(map(len, self.columns)) <= 200:
            suffix = f"; columns are: {', '.join(excerpt(c)[1:-1] for c in self.columns)}"
        else:  # a header this long is probably not a header: do not echo the file
            suffix = f"; the first line has {len(self.columns)} columns (is this the right file?)"
        raise DataError(f"{self.shown}: unknown column {column!r}{suffix}")

    def _first_row_cells(self) -> list[str] | None:
        try:
            with open(self.path, "r", encoding="utf-8") as f:
                if self.header:
                    f.readline()
                for line in f:
                    if line.strip():
                        return line.rstrip("\r\n").split(self.delimiter)
        except UnicodeDecodeError:
            raise not_utf8(self.shown, self.path) from None
        return None

    def _target_is_text(self) -> bool:
        if len(self.target_cols) != 1:
            return False
        cells = self._first_row_cells()
        if cells is None or self.target_cols[0] >= len(cells):
            return False
        cell = cells[self.target_cols[0]].strip().strip('"')
        try:
            float(cell)
        except ValueError:
            return cell != ""
        return False

    # -- chunked reading

    def _line_chunks(self) -> Iterator[tuple[int, list[str]]]:
        """(file line number of the chunk's first line, lines), a few MB at a time."""
        with open(self.path, "r", encoding="utf-8", newline=None) as f:
            line_no = 1
            if self.header:
                header = f.readline()
                while header and not header.strip():
                    header = f.readline()
                    line_no += 1
                line_no += 1
            while True:
                try:
                    lines = f.readlines(CSV_CHUNK_BYTES)
                except UnicodeDecodeError:
                    raise not_utf8(self.shown, self.path) from None
                if not lines:
                    return
                yield line_no, lines
                line_no += len(lines)

    def chunks(self) -> Iterator[Chunk]:
        numeric_targets = [] if self.string_labels else self.target_cols
        numeric = self.feature_cols + numeric_targets + ([self.weight_col] if self.weight_col is not None else [])
        n_rows = 0
        for first_line, lines in self._line_chunks():
            data_rows = [i for i, line in enumerate(lines) if line.strip()] if _has_blank(lines) else None
            if data_rows is not None:
                lines = [lines[i] for i in data_rows]
                if not lines:
                    continue

            def where(row: int, col_pos: int | None = None, _rows=data_rows, _first=first_line) -> str:
                line = _first + (_rows[row] if _rows is not None else row)
                text = f":{line}: row {n_rows + row + 1}"
                if col_pos is not None:
                    text += f", column {self.columns[numeric[col_pos]]!r}"
                return text

            self._check_ragged(lines, where)
            try:
                block = np.loadtxt(
                    lines, delimiter=self.delimiter, dtype=np.float32, usecols=numeric,
                    ndmin=2, comments=None, quotechar='"', encoding=None,
                )
            except ValueError:
                self._explain_parse_failure(lines, numeric, where)
                raise  # pragma: no cover - the scan always finds the culprit
            _check_finite(block, self.shown, where)
            n_f = len(self.feature_cols)
            chunk = Chunk(x=np.ascontiguousarray(block[:, :n_f]))
            if numeric_targets:
                chunk.targets = np.ascontiguousarray(block[:, n_f : n_f + len(numeric_targets)])
            if self.weight_col is not None:
                chunk.weights = np.ascontiguousarray(block[:, -1])
            if self.string_labels:
                labels = np.loadtxt(
                    lines, delimiter=self.delimiter, dtype=str, usecols=self.target_cols,
                    ndmin=1, comments=None, quotechar='"', encoding=None,
                )
                chunk.labels = np.char.strip(labels.reshape(-1))
                empty = np.flatnonzero(chunk.labels == "")
                if empty.size:
                    raise DataError(f"{self.shown}{where(int(empty[0]))}: empty class label in column {excerpt(self.target_names[0])}")
            n_rows += len(block)
            yield chunk
        if n_rows == 0:
            raise DataError(f"{self.shown}: no data rows")

    def _check_ragged(self, lines: list[str], where) -> None:
        counts = np.char.count(np.asarray(lines), self.delimiter)
        bad = np.flatnonzero(counts != self.n_columns - 1)
        if bad.size:
            row = int(bad[0])
            found = int(counts[row]) + 1
            raise DataError(f"{self.shown}{where(row)}: has {found} columns, expected {self.n_columns}")

    def _explain_parse_failure(self, lines: list[str], numeric: list[int], where) -> None:
        for row, line in enumerate(lines):
            cells = line.rstrip("\r\n").split(self.delimiter)
            for pos, col in enumerate(numeric):
                cell = cells[col].strip().strip('"').strip()
                if cell == "":
                    raise DataError(f"{self.shown}{where(row, pos)}: empty cell")
                try:
                    float(cell)
                except ValueError:
                    hint = ""
                    if col in self.feature_cols:
                        hint = " (features must be numeric)"
                    raise DataError(f"{self.shown}{where(row, pos)}: {excerpt(cell)} is not a number{hint}") from None


def _has_blank(lines: list[str]) -> bool:
    return any(not line.strip() for line in lines)


# ---------------------------------------------------------------- .npy


class NpyArray:
    """A .npy file read by rows without loading it: memory-mapped for random access, or
    read in chunks with readinto for streaming (which keeps the resident set flat)."""

    def __init__(self, path: Path, shown: str):
        _require_file(path, shown)
        self.path, self.shown = path, shown
        try:
            with open(path, "rb") as f:
                version = np.lib.format.read_magic(f)
                if version == (1, 0):
                    shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
                else:
                    shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
                self.offset = f.tell()
        except (ValueError, OSError, EOFError) as error:
            raise DataError(f"{shown}: not a readable .npy file ({str(error)[:80]})") from None
        if dtype.hasobject:
            raise DataError(f"{shown}: holds Python objects; only numeric arrays can be read (no pickle)")
        if dtype.kind not in "biuf":
            raise DataError(f"{shown}: dtype {dtype} is not numeric")
        if fortran and len(shape) > 1:
            raise DataError(f"{shown}: Fortran-ordered arrays cannot be streamed; save it with np.ascontiguousarray")
        if len(shape) == 0 or shape[0] == 0:
            raise DataError(f"{shown}: no rows (shape {shape})")
        claimed = math.prod(shape) * dtype.itemsize
        held = os.path.getsize(path) - self.offset
        if claimed != held:  # a lying header: never mmap or allocate what it claims
            raise DataError(f"{shown}: the header claims shape {list(shape)} ({claimed:,} bytes of data) "
                            f"but the file holds {held:,} bytes")
        self.shape, self.dtype = tuple(shape), dtype
        self.row_shape = self.shape[1:]
        self.row_bytes = int(np.prod(self.row_shape, dtype=np.int64)) * dtype.itemsize

    def __len__(self) -> int:
        return self.shape[0]

    def mmap(self) -> np.ndarray:
        return np.load(self.path, mmap_mode="r", allow_pickle=False)

    def read_rows(self, start: int, stop: int, out: np.ndarray | None = None) -> np.ndarray:
        """Rows [start, stop) in the file's dtype, read with one readinto."""
        n = stop - start
        buffer = out if out is not None else np.empty((n, *self.row_shape), dtype=self.dtype)
        view = memoryview(buffer.reshape(-1).view(np.uint8))[: n * self.row_bytes]
        with open(self.path, "rb", buffering=0) as f:
            f.seek(self.offset + start * self.row_bytes)
            got = f.readinto(view)
        if got != n * self.row_bytes:
            raise DataError(f"{self.shown}: file is truncated (expected {len(self)} rows)")
        return buffer[:n]


def as_float32(a: np.ndarray, shown: str, row0: int = 0) -> np.ndarray:
    """float32 copy (or the array itself when it already is C-contiguous float32), checked finite."""
    out = a if (a.dtype == np.float32 and a.flags.c_contiguous) else np.ascontiguousarray(a, dtype=np.float32)
    if out.dtype.kind == "f":
        _check_finite(out, shown, lambda row, col: f": row {row0 + row + 1}")
    return out


def npz_member(archive: zipfile.ZipFile, path_shown: str, key: str) -> tuple[zipfile.ZipInfo, tuple, np.dtype]:
    """The member `key` of an open .npz and its (shape, dtype) from its header, checked
    against the member's stored size (a lying header is refused before any allocation)."""
    files = [name[:-4] for name in archive.namelist() if name.endswith(".npy")]
    if key not in files:
        hint = did_you_mean(key, files)
        shown_keys = ", ".join(excerpt(k) for k in files[:10]) or "none"
        suffix = f"; did you mean {hint!r}?" if hint else f"; keys are: {shown_keys}"
        raise DataError(f"{path_shown}: no array {key!r}{suffix}")
    info = archive.getinfo(key + ".npy")
    with archive.open(info) as member:
        version = np.lib.format.read_magic(member)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read_header(member)
        header_bytes = member.tell()
    if dtype.hasobject:
        raise DataError(f"{path_shown}: array {key!r} holds Python objects; only numeric arrays can be read (no pickle)")
    claimed = math.prod(shape) * dtype.itemsize
    if claimed != info.file_size - header_bytes:
        raise DataError(f"{path_shown}: array {key!r} claims shape {list(shape)} ({claimed:,} bytes) but holds "
                        f"{info.file_size - header_bytes:,} bytes")
    return info, tuple(shape), dtype


def load_npz(path: Path, shown: str, key: str) -> np.ndarray:
    _require_file(path, shown)
    try:
        with zipfile.ZipFile(path) as archive:
            info, _, _ = npz_member(archive, shown, key)
            with archive.open(info) as member:
                return np.lib.format.read_array(member, allow_pickle=False)
    except DataError:
        raise
    except zipfile.BadZipFile:
        raise DataError(f"{shown}: not a .npz file (not a zip archive, or a damaged one)") from None
    except (ValueError, OSError, EOFError, zlib.error, NotImplementedError) as error:
        raise DataError(f"{shown}: not a readable .npz file ({str(error)[:80]})") from None


# ---------------------------------------------------------------- 2-D .npy tables and shards


class NpyTable:
    """A 2-D .npy file used like a CSV without header: columns chosen by index."""

    def __init__(self, path: Path, shown: str, target, features, weight, chunk_rows: int = 65536):
        self.array = NpyArray(path, shown)
        self.shown = shown
        if len(self.array.shape) != 2:
            raise DataError(f"{shown}: a shard must be a 2-D table [rows, columns], got shape {self.array.shape}")
        n_cols = self.array.shape[1]

        def col(c) -> int:
            if isinstance(c, bool) or not isinstance(c, int):
                raise DataError(f"{shown}: .npy columns have no names; give column {c!r} as an index")
            if not -n_cols <= c < n_cols:
                raise DataError(f"{shown}: column index {c} out of range; the table has {n_cols} columns")
            return c % n_cols

        targets = [] if target is None else (list(target) if isinstance(target, list) else [target])
        self.target_cols = [col(c) for c in targets]
        self.weight_col = None if weight is None else col(weight)
        taken = set(self.target_cols) | ({self.weight_col} if self.weight_col is not None else set())
        self.feature_cols = [i for i in range(n_cols) if i not in taken] if features is None else [col(c) for c in features]
        self.feature_names = [str(i) for i in self.feature_cols]
        self.target_names = [str(i) for i in self.target_cols]
        self.string_labels = False
        self.chunk_rows = chunk_rows

    def chunks(self) -> Iterator[Chunk]:
        n = len(self.array)
        for start in range(0, n, self.chunk_rows):
            stop = min(n, start + self.chunk_rows)
            block = as_float32(self.array.read_rows(start, stop), self.shown, start)
            chunk = Chunk(x=np.ascontiguousarray(block[:, self.feature_cols]))
            if self.target_cols:
                chunk.targets = np.ascontiguousarray(block[:, self.target_cols])
            if self.weight_col is not None:
                chunk.weights = np.ascontiguousarray(block[:, self.weight_col])
            yield chunk


class ShardTable:
    """A directory of .csv or 2-D .npy shards with the same columns, read in name order."""

    def __init__(self, directory: Path, shown: str, pattern: str | None, target, features, weight, delimiter: str, chunk_rows: int = 65536):
        if not directory.exists():
            raise DataError(f"{shown}: no such directory (looked for {directory})")
        if not directory.is_dir():
            raise DataError(f"{shown}: is a file; shards: expects a directory")
        if pattern is None:
            pattern = "*.csv" if glob.glob(str(directory / "*.csv")) else "*.npy"
        paths = sorted(Path(p) for p in glob.glob(str(directory / pattern)))
        if not paths:
            raise DataError(f"{shown}: no shards matching {pattern!r}")
        self.tables = []
        for path in paths:
            name = f"{shown.rstrip('/')}/{path.name}"
            if path.suffix == ".csv":
                self.tables.append(CsvTable(path, name, target, features, weight, delimiter))
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
        self.string_labels = first.string_labels

    def chunks(self) -> Iterator[Chunk]:
        for table in self.tables:
            yield from table.chunks()


def concat_chunks(chunks: Iterator[Chunk], shown: str) -> Chunk:
    parts = list(chunks)
    if not parts:
        raise DataError(f"{shown}: no data rows")

    def cat(name: str):
        values = [getattr(p, name) for p in parts]
        if values[0] is None:
            return None
        return values[0] if len(values) == 1 else np.concatenate(values)

    return Chunk(x=cat("x"), targets=cat("targets"), labels=cat("labels"), weights=cat("weights"))
