"""Atomic file writes and validated JSON reads.

Every file lands under its final name by one `os.replace` of a fully written and fsynced
temp file in the same directory, followed by an fsync of the directory, so a crash never
leaves a partial file under a final name. Every expected failure (missing, damaged or
mismatched file, a disk that is full or read-only) raises `ArtifactError` with one line
naming the path.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import secrets
from pathlib import Path
from typing import Any

import numpy as np

from trainctl.errors import ArtifactError

_TMP_PREFIX = ".tmp-"  # temp files and temp checkpoint dirs; never a final name


def _reason(exc: BaseException) -> str:
    """The short human reason of an OSError (also for OSError(ENOSPC) built with one arg)."""
    if isinstance(exc, OSError):
        if exc.strerror:
            return exc.strerror
        code = exc.errno
        if code is None and exc.args and isinstance(exc.args[0], int):
            code = exc.args[0]
        if code is not None:
            return os.strerror(code)
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _fsync_dir(directory: Path) -> None:
    """Make a rename/creation inside `directory` durable."""
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError as exc:
        raise ArtifactError(f"cannot sync directory {directory}: {_reason(exc)}") from exc
    try:
        os.fsync(fd)
    except OSError as exc:
        # Some file systems cannot fsync a directory at all; that is not a write failure.
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise ArtifactError(f"cannot sync directory {directory}: {_reason(exc)}") from exc
    finally:
        os.close(fd)


def _write_fd(fd: int, data: bytes | bytearray | memoryview) -> None:
    view = memoryview(data).cast("B")
    while view:
        written = os.write(fd, view)
        if written <= 0:  # a write that makes no progress would loop forever
            raise OSError(errno.EIO, "write made no progress")
        view = view[written:]


def _create_exclusive(directory: Path, stem: str) -> tuple[int, Path]:
    """Open a fresh temp file in `directory` (mode 0666 minus umask, like a normal file)."""
    for _ in range(100):
        tmp = directory / f"{_TMP_PREFIX}{stem}.{secrets.token_hex(6)}"
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "could not pick a free temp file name", str(directory))


def _write_new(path: Path, data: bytes, sync: bool = True) -> None:
    """Create `path` (must not exist) with `data`, fsynced unless the caller syncs it later
    (runs/checkpoints.CheckpointSyncer); remove it again on failure."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        _write_fd(fd, data)
        if sync:
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        _unlink_quietly(path)
        raise
    os.close(fd)


def _unlink_quietly(path: Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def atomic_write_bytes(path: str | os.PathLike, data: bytes | bytearray | memoryview) -> None:
    """Write `data` to `path` atomically: temp file in the same dir, fsync, rename, fsync dir.

    On any write error the temp file is removed, a previous file at `path` is left as it
    was, and `ArtifactError` names the path.
    """
    path = Path(path)
    directory = path.parent
    try:
        fd, tmp = _create_exclusive(directory, path.name)
    except OSError as exc:
        raise ArtifactError(f"cannot write {path}: {_reason(exc)}") from exc
    try:
        try:
            _write_fd(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as exc:
        _unlink_quietly(tmp)
        raise ArtifactError(f"cannot write {path}: {_reason(exc)}") from exc
    except BaseException:
        _unlink_quietly(tmp)
        raise
    _fsync_dir(directory)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write `text` as UTF-8 to `path` atomically (see `atomic_write_bytes`)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"object of type {type(obj).__name__} is not JSON serialisable")


def _json_dumps(obj: Any) -> str:
    # NaN/Infinity are written as JSON's common extension (Python's json reads them back):
    # a diverged run's metrics must still be saved.
    return json.dumps(obj, indent=2, default=_json_default, ensure_ascii=False) + "\n"


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write `obj` as indented JSON to `path` atomically; numpy scalars/arrays become numbers/lists."""
    try:
        text = _json_dumps(obj)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{path}: {exc}") from exc
    atomic_write_text(path, text)


def read_json(path: str | os.PathLike) -> Any:
    """Parse a JSON file; `ArtifactError` names the file (and line:col) if missing or damaged."""
    path = Path(path)
    data = _read_bytes(path)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ArtifactError(f"{path}: not a UTF-8 JSON file (bad byte at offset {exc.start})") from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{path}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}") from exc
    except RecursionError as exc:
        raise ArtifactError(f"{path}: invalid JSON: nested too deeply") from exc


def _read_bytes(path: Path) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except FileNotFoundError as exc:
        raise ArtifactError(f"{path}: file not found") from exc
    except IsADirectoryError as exc:
        raise ArtifactError(f"{path}: is a directory, expected a file") from exc
    except OSError as exc:
        raise ArtifactError(f"cannot read {path}: {_reason(exc)}") from exc


def config_hash(text: str) -> str:
    """Identity of a resolved config: 'sha256:<hex>' of its UTF-8 text."""
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()
