""".npy and .npz files read without pickle: headers checked against the file size before any
allocation, rows memory-mapped or read by range; 2-D .npy tables used like headerless CSVs."""

from __future__ import annotations

import math
import os
import zipfile
import zlib
from pathlib import Path
from typing import Iterator

import numpy as np

from trainctl.data.files import Chunk, _require_file, as_float32, excerpt
from trainctl.errors import DataError
from trainctl.registry import did_you_mean



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
