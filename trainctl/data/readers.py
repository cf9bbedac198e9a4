"""File readers: CSV, .npy, .npz and shard directories, read in bulk chunks.

A reader yields `Chunk`s of rows: features float32 [c, ...], numeric targets float32 [c, m]
or string labels [c], and sample weights [c]. The in-memory loader concatenates them; the
stream feeds them through its pipeline. Rows are never parsed one by one in Python: a chunk
of CSV goes to pyarrow's C++ parser at once, and only when it refuses one is the file
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

CSV_CHUNK_BYTES = 8 << 20  # bytes pyarrow parses at a time: big enough to amortise, small in RAM


@dataclass
class Chunk:
    x: np.ndarray  # float32 [c, ...]
    targets: np.ndarray | None = None  # float32 [c, m]
    labels: np.ndarray | None = None  # str [c] (string class labels) — instead of targets
    weights: np.ndarray | None = None  # float32 [c]
    text: list[np.ndarray] | None = None  # categorical feature columns, object [c] each (None: missing)

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
    return DataError(f"{shown}{where}: not UTF-8 text (byte 0x{byte}); save it as UTF-8 or set encoding: "
                     "(latin-1, utf-16, ...)")


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


def _arrow_csv():
    import pyarrow as pa
    import pyarrow.csv as pacsv

    return pa, pacsv


class CsvTable:
    """One CSV file read by pyarrow's streaming CSV reader: header, column selection, types.

    target/features/weight are column names or 0-based indices (negative from the end).
    Column kinds come from pyarrow's type inference over the first block (a sample, not the
    whole file): a single text target is a class label column. Feature columns are numeric
    unless `columns` declares them categorical. Blocks of CSV_CHUNK_BYTES are parsed in C;
    when pyarrow refuses one (ragged row, text in a number column, a missing cell without
    a fill) the file is scanned again with the csv module to name the file line, the data
    row and the column.

    Chunks: `x` float32 [c, n_numeric] (the numeric features; NaN marks a missing cell in a
    column that has a fill), `text` one object array [c] per categorical feature (None is
    missing). `layout` lists the features in order as (name, kind, position in x or text);
    `needs_encoding` says whether x must go through a fitted TabularEncoder.
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
        *,
        encoding: str = "utf-8",
        columns: dict | None = None,
        fill: str | None = None,
        missing_values: Sequence[str] = ("", "NA", "N/A", "null"),
        window: int | None = None,
    ):
        _require_file(path, shown)
        self.window = window  # a time series: features may include the target (its past is an input)
        self.path, self.shown, self.delimiter, self.header = path, shown, delimiter, header
        self.encoding, self.missing_values = encoding, list(missing_values)
        self.column_specs = dict(columns or {})
        self.default_fill = fill
        schema = self._sample_schema()
        self.n_columns = len(schema.names)
        self._arrow_names = list(schema.names)
        self.columns = list(schema.names) if header else [str(i) for i in range(self.n_columns)]
        targets = [] if target is None else (list(target) if isinstance(target, list) else [target])
        self.target_cols = [self._column(c) for c in targets]
        self.weight_col = None if weight is None else self._column(weight)
        taken = set(self.target_cols) | ({self.weight_col} if self.weight_col is not None else set())
        if window is not None:  # the target's past is an input; a date or text column is left out by default
            taken = {self.weight_col} if self.weight_col is not None else set()
        if features is None:
            self.feature_cols = [i for i in range(self.n_columns) if i not in taken]
            if window is not None:
                numeric = [i for i in self.feature_cols if not self._text_column(i, self._numeric_type())]
                self.feature_cols = numeric or self.feature_cols
        else:
            self.feature_cols = [self._column(c) for c in features]
            both = sorted(set(self.feature_cols) & taken)
            if both:
                raise DataError(f"{shown}: column {excerpt(self.columns[both[0]])} is both a feature and a target/weight")
        if not self.feature_cols:
            raise DataError(f"{shown}: no feature columns left after taking the target")
        self.feature_names = [self.columns[i] for i in self.feature_cols]
        self.target_names = [self.columns[i] for i in self.target_cols]
        for name in self.column_specs:
            if name not in self.feature_names:
                hint = did_you_mean(name, self.feature_names)
                suffix = f"; did you mean {hint!r}?" if hint else f"; feature columns are: {', '.join(excerpt(c) for c in self.feature_names[:20])}"
                raise DataError(f"{shown}: columns: {name!r} is not a feature column{suffix}")
        self.string_labels = len(self.target_cols) == 1 and self._text_column(self.target_cols[0], self._numeric_type())
        self.categorical = [c for c in self.feature_cols if self._spec(c).type == "categorical"]
        self.numeric_features = [c for c in self.feature_cols if c not in self.categorical]
        self.layout = [
            (self.columns[c], "categorical", self.categorical.index(c)) if c in self.categorical
            else (self.columns[c], "numeric", self.numeric_features.index(c))
            for c in self.feature_cols
        ]
        self.fills = {c: self._spec(c).fill for c in self.feature_cols}
        self.needs_encoding = bool(self.categorical) or any(f is not None for f in self.fills.values())
        self.specs = {self.columns[c]: self._spec(c) for c in self.feature_cols}

    @property
    def row_shape(self) -> tuple[int, ...] | None:
        """One model input: [features], or [window, features] for a time series (None when
        categorical columns make the width depend on the whole file)."""
        if self.categorical:
            return None
        return (len(self.feature_cols),) if self.window is None else (self.window, len(self.feature_cols))

    @staticmethod
    def _numeric_type():
        pa, _ = _arrow_csv()
        return lambda t: t is None or pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_null(t)

    def _spec(self, col: int):
        from trainctl.data.config import ColumnSpec

        spec = self.column_specs.get(self.columns[col])
        if spec is None:
            return ColumnSpec(fill=self.default_fill)
        if spec.fill is None and spec.type == "numeric" and self.default_fill is not None:
            return spec.model_copy(update={"fill": self.default_fill})
        return spec

    # -- pyarrow

    def _read_options(self, block_size: int):
        import codecs

        _, pacsv = _arrow_csv()
        # pyarrow decodes "utf8" natively and any other name (even "utf-8") through Python
        encoding = "utf8" if codecs.lookup(self.encoding).name == "utf-8" else self.encoding
        return pacsv.ReadOptions(
            block_size=block_size, encoding=encoding, autogenerate_column_names=not self.header,
            use_threads=True,
        )

    def _open(self, block_size: int, column_types: dict | None = None, include: list[str] | None = None):
        pa, pacsv = _arrow_csv()
        convert = pacsv.ConvertOptions(
            column_types=column_types, include_columns=include, null_values=self.missing_values,
            strings_can_be_null=True, quoted_strings_can_be_null=True,
        )
        parse = pacsv.ParseOptions(delimiter=self.delimiter, quote_char='"', newlines_in_values=True)
        return pacsv.open_csv(self.path, read_options=self._read_options(block_size), parse_options=parse,
                              convert_options=convert)

    def _not_text(self, error: UnicodeDecodeError) -> DataError:
        """One line for a file that is not in its encoding: for UTF-8, the line and byte."""
        import codecs

        if codecs.lookup(self.encoding).name == "utf-8":
            return not_utf8(self.shown, self.path)
        return DataError(f"{self.shown}: not {self.encoding} text ({error.reason} at byte {error.start}); "
                         "set encoding: (latin-1, utf-16, ...)")

    def _check_sample_decodes(self) -> None:
        """pyarrow decodes lazily; the first MB is decoded here so validate sees bad text too."""
        with open(self.path, "rb") as f:
            raw = f.read(1 << 20)
        try:
            raw.decode(self.encoding)
        except UnicodeDecodeError as error:
            if error.start < len(raw) - 4:  # not just a character cut by the end of the sample
                raise self._not_text(error) from None
        except LookupError:
            raise DataError(f"{self.shown}: unknown encoding {self.encoding!r}") from None

    def _sample_schema(self):
        """Header and inferred column types from the first block (at most 1 MB is read)."""
        self._check_sample_decodes()
        try:
            schema = self._read_sample()
            schema.names  # noqa: B018 - decoded lazily: a bad header fails here, inside the try
            return schema
        except UnicodeDecodeError as error:
            raise self._not_text(error) from None

    def _read_sample(self):
        """pyarrow's read_csv over the file's first MB cut at a row end: no streaming reader,
        whose background read-ahead would go on parsing the whole file (CPU and memory)."""
        import codecs

        pa, pacsv = _arrow_csv()
        with open(self.path, "rb") as f:
            head = f.read(1 << 20)
            whole = not f.read(1)
        ascii_like = "\n".encode(self.encoding) == b"\n" and not codecs.lookup(self.encoding).name.startswith("utf-8-sig")
        cut = len(head) if whole else _last_row_end(head)
        if ascii_like and cut:
            parse = pacsv.ParseOptions(delimiter=self.delimiter, quote_char='"', newlines_in_values=True)
            convert = pacsv.ConvertOptions(null_values=self.missing_values, strings_can_be_null=True,
                                           quoted_strings_can_be_null=True)
            try:
                table = pacsv.read_csv(pa.py_buffer(memoryview(head)[:cut]), read_options=self._read_options(1 << 20),
                                       parse_options=parse, convert_options=convert)
            except pa.ArrowInvalid as error:
                if "Empty CSV file" in str(error):
                    raise DataError(f"{self.shown}: file is empty") from None
                self.n_columns = None
                self._explain(0, str(error))
            batch = table.combine_chunks().to_batches()
            self._sample = batch[0] if batch and batch[0].num_rows else None
            return table.schema
        try:
            reader = self._open(min(CSV_CHUNK_BYTES, 1 << 20))
        except pa.ArrowInvalid as error:
            if "Empty CSV file" in str(error):
                raise DataError(f"{self.shown}: file is empty") from None
            self.n_columns = None
            self._explain(0, str(error))
        try:
            self._sample = reader.read_next_batch()
        except (StopIteration, pa.ArrowInvalid):
            self._sample = None
        return reader.schema

    def _text_column(self, col: int, numeric_type) -> bool:
        """Text when pyarrow did not infer a number and the first data row's cell is not one
        (a typo further down a number column stays an error, not a class)."""
        if numeric_type(self._sample.schema.types[col] if self._sample is not None else None) or self._sample is None:
            return False
        values = self._sample.column(col)
        first = next((v for v in values.to_pylist() if v is not None), None)
        if first is None:
            return False
        try:
            float(str(first))
        except ValueError:
            return True
        return False

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
        suffix = f"; did you mean {hint!r}?" if hint else f"; columns are: {', '.join(excerpt(c) for c in self.columns[:20])}"
        raise DataError(f"{self.shown}: unknown column {column!r}{suffix}")

    # -- chunked reading

    def _number_columns(self) -> list[int]:
        """Columns parsed as float64: numeric features, numeric targets, the weight."""
        targets = [] if self.string_labels else self.target_cols
        return self.numeric_features + targets + ([self.weight_col] if self.weight_col is not None else [])

    def chunks(self) -> Iterator[Chunk]:
        pa, _ = _arrow_csv()
        numbers = self._number_columns()
        text = self.categorical + (self.target_cols if self.string_labels else [])
        name = lambda c: self._arrow_names[c]  # noqa: E731
        types = {name(c): pa.float64() for c in numbers} | {name(c): pa.string() for c in text}
        include = [name(c) for c in sorted(set(numbers) | set(text))]
        fill_cols = {c for c in self.numeric_features if self.fills[c] is not None}
        n_f = len(self.numeric_features)
        n_t = 0 if self.string_labels else len(self.target_cols)
        n_rows = 0
        batches = self._batches(types, include)
        while True:
            try:
                batch = next(batches)
            except StopIteration:
                break
            except pa.ArrowInvalid as error:
                self._explain(n_rows, str(error))
            except UnicodeDecodeError as error:
                raise self._not_text(error) from None
            c = batch.num_rows
            if c == 0:
                continue
            block = np.empty((c, len(numbers)), dtype=np.float32)
            with np.errstate(over="ignore"):  # a value beyond float32 becomes inf, refused below
                for j, col in enumerate(numbers):
                    values = batch.column(name(col))
                    if values.null_count and col not in fill_cols:
                        self._explain(n_rows, "missing value")
                    block[:, j] = values.to_numpy(zero_copy_only=False)
            checked = block if not fill_cols else block[:, [j for j, col in enumerate(numbers) if col not in fill_cols]]
            if not np.isfinite(checked).all() or (fill_cols and np.isinf(block).any()):
                self._explain(n_rows, "value is not finite")
            chunk = Chunk(x=np.ascontiguousarray(block[:, :n_f]) if len(numbers) != n_f else block)
            if n_t:
                chunk.targets = np.ascontiguousarray(block[:, n_f : n_f + n_t])
            if self.weight_col is not None:
                chunk.weights = np.ascontiguousarray(block[:, -1])
            if self.categorical:
                chunk.text = [batch.column(name(col)).to_numpy(zero_copy_only=False) for col in self.categorical]
                if any(self.fills[col] is None and (t == None).any() for col, t in zip(self.categorical, chunk.text)):  # noqa: E711
                    self._explain(n_rows, "missing value")
            if self.string_labels:
                import pyarrow.compute as pc

                labels = batch.column(name(self.target_cols[0]))
                if labels.null_count:
                    self._explain(n_rows, "empty class label")
                chunk.labels = pc.utf8_trim_whitespace(labels).to_numpy(zero_copy_only=False).astype(str)
                empty = np.flatnonzero(chunk.labels == "")
                if empty.size:
                    self._explain(n_rows, "empty class label")
            n_rows += c
            yield chunk
        if n_rows == 0:
            raise DataError(f"{self.shown}: no data rows")

    def _batches(self, types: dict, include: list[str]):
        """Record batches of the data rows, CSV_CHUNK_BYTES of the file at a time.

        pyarrow's own streaming reader reads the input ahead in the background as fast as it
        can, so a file larger than memory would fill it; here the file is read a block at a
        time, cut after its last row end outside quotes, and each block parsed by pyarrow
        (column names given, so only the first block skips the header). Encodings where a
        newline is not the byte 0x0A (utf-16, utf-32) use pyarrow's streaming reader."""
        import codecs

        pa, pacsv = _arrow_csv()
        if "\n".encode(self.encoding) != b"\n" or '"'.encode(self.encoding) != b'"' or codecs.lookup(self.encoding).name.startswith("utf-8-sig"):
            reader = self._open(CSV_CHUNK_BYTES, types, include)
            while True:
                try:
                    yield reader.read_next_batch()
                except StopIteration:
                    return
        encoding = "utf8" if codecs.lookup(self.encoding).name == "utf-8" else self.encoding
        # blocks of a quarter chunk: pyarrow parses them on its threads side by side
        read = pacsv.ReadOptions(column_names=self._arrow_names, encoding=encoding, use_threads=True,
                                 block_size=max(CSV_CHUNK_BYTES // 4, 1 << 16))
        parse = pacsv.ParseOptions(delimiter=self.delimiter, quote_char='"', newlines_in_values=True)
        convert = pacsv.ConvertOptions(column_types=types, include_columns=include, null_values=self.missing_values,
                                       strings_can_be_null=True, quoted_strings_can_be_null=True)
        for block in _row_blocks(self.path, self.header):
            table = pacsv.read_csv(pa.py_buffer(block), read_options=read, parse_options=parse, convert_options=convert)
            yield from table.to_batches()

    # -- the slow path: name the line, row and column pyarrow refused

    def _explain(self, first_row: int, arrow_message: str):
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


def _row_blocks(path: Path, header: bool) -> Iterator[memoryview]:
    """The file's data rows in blocks of about CSV_CHUNK_BYTES, each ending at a row end
    (views, not copies); with `header`, the first non-blank row is left out."""
    pending = b""
    skip_header = header
    with open(path, "rb") as f:
        while True:
            block = f.read(CSV_CHUNK_BYTES)
            data = pending + block if pending else block
            if not block:
                if not skip_header and data and not data.isspace():
                    yield memoryview(data)  # the last row, without a newline
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
                yield memoryview(data)[:cut]
            pending = data[cut:]


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
        self.layout = [(n, "numeric", i) for i, n in enumerate(self.feature_names)]
        self.needs_encoding = False
        self.specs = {}

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


def concat_chunks(chunks: Iterator[Chunk], shown: str) -> Chunk:
    parts = list(chunks)
    if not parts:
        raise DataError(f"{shown}: no data rows")

    def cat(name: str):
        values = [getattr(p, name) for p in parts]
        if values[0] is None:
            return None
        return values[0] if len(values) == 1 else np.concatenate(values)

    text = None
    if parts[0].text is not None:
        text = [np.concatenate([p.text[i] for p in parts]) for i in range(len(parts[0].text))]
    return Chunk(x=cat("x"), targets=cat("targets"), labels=cat("labels"), weights=cat("weights"), text=text)
