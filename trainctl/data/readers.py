"""File readers: CSV here; .npy/.npz (npy.py), shard directories (shards.py) and what they share
(files.py) beside it, all importable from here.

A reader yields `Chunk`s of rows: features float32 [c, ...], numeric targets float32 [c, m]
or string labels [c], and sample weights [c]. The in-memory loader concatenates them; the
stream feeds them through its pipeline. Rows are never parsed one by one in Python: a chunk
of CSV goes to pyarrow's C++ parser at once, and only when it refuses one is the file
scanned again to name the exact line and column.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from trainctl.data.csv_scan import _last_row_end, _row_blocks, _row_ends  # noqa: F401
from trainctl.data.files import (Chunk, _check_finite, _require_file, as_float32, concat_chunks, excerpt,  # noqa: F401
                                 not_utf8, resolve_path)
from trainctl.data.npy import NpyArray, NpyTable, load_npz, npz_member  # noqa: F401 - public here
from trainctl.errors import DataError
from trainctl.registry import did_you_mean

CSV_CHUNK_BYTES = 8 << 20  # bytes pyarrow parses at a time: big enough to amortise, small in RAM

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
                table = pacsv.read_csv(pa.py_buffer(head[:cut]), read_options=self._read_options(1 << 20),
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
        finally:
            # the streaming reader reads ahead on arrow's threads: close it now, so none of them
            # is still running when the interpreter exits (arrow's threads torn down at exit
            # abort the process: "terminate called without an active exception", exit 134)
            schema = reader.schema
            reader.close()
        return schema

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
            try:
                while True:
                    try:
                        yield reader.read_next_batch()
                    except StopIteration:
                        return
            finally:
                reader.close()  # also when the consumer stops early (see _read_sample)
        encoding = "utf8" if codecs.lookup(self.encoding).name == "utf-8" else self.encoding
        # blocks of a quarter chunk: pyarrow parses them on its threads side by side
        read = pacsv.ReadOptions(column_names=self._arrow_names, encoding=encoding, use_threads=True,
                                 block_size=max(CSV_CHUNK_BYTES // 4, 1 << 16))
        parse = pacsv.ParseOptions(delimiter=self.delimiter, quote_char='"', newlines_in_values=True)
        convert = pacsv.ConvertOptions(column_types=types, include_columns=include, null_values=self.missing_values,
                                       strings_can_be_null=True, quoted_strings_can_be_null=True)
        for block in _row_blocks(self.path, self.header, CSV_CHUNK_BYTES):
            table = pacsv.read_csv(pa.py_buffer(block), read_options=read, parse_options=parse, convert_options=convert)
            yield from table.to_batches()

    # -- the slow path: name the line, row and column pyarrow refused

    def _explain(self, first_row: int, arrow_message: str):
        """Raise the first problem at or after data row `first_row` (see csv_scan.explain)."""
        from trainctl.data.csv_scan import explain

        explain(self, first_row, arrow_message)


def __getattr__(name: str):
    if name == "ShardTable":  # shards.py imports CsvTable from here
        from trainctl.data.shards import ShardTable

        return ShardTable
    raise AttributeError(name)
