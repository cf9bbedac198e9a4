"""What every file reader shares: the Chunk of rows it yields, paths relative to the config,
short printable quotes of bad cells, located UTF-8 and finiteness errors, concatenation."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
import os
from typing import Iterator

import numpy as np

from trainctl.errors import DataError


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


def as_float32(a: np.ndarray, shown: str, row0: int = 0) -> np.ndarray:
    """float32 copy (or the array itself when it already is C-contiguous float32), checked finite."""
    out = a if (a.dtype == np.float32 and a.flags.c_contiguous) else np.ascontiguousarray(a, dtype=np.float32)
    if out.dtype.kind == "f":
        _check_finite(out, shown, lambda row, col: f": row {row0 + row + 1}")
    return out


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
