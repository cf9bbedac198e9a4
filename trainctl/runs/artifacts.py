"""Run directory: atomic writes, safetensors weights, JSON/CSV artifacts and checkpoints.

Every file lands under its final name by one `os.replace` of a fully written and fsynced
temp file in the same directory, followed by an fsync of the directory, so a crash never
leaves a partial file under a final name. Every expected failure (missing, damaged or
mismatched file, a disk that is full or read-only) raises `ArtifactError` with one line
naming the path. Nothing here pickles; safetensors headers are validated before the
library is trusted with the bytes.

Layout of a run directory::

    config.yaml                 resolved config (text)
    model.json                  architecture (JSON object)
    weights.safetensors         "dense_Dense1/kernel", ...
    optimizer.safetensors       optimizer slots + "iterations"
    state.json                  training position for resume + "config_hash"
    history.csv                 one row per epoch: epoch, then log keys
    metrics.json                final metrics
    preprocessing.safetensors   optional standardisation statistics
    checkpoints/<seq>-<tag>/    files + manifest.json (sha256 and size of each)
"""

from __future__ import annotations

import csv
import errno
import hashlib
import io
import json
import math
import os
import re
import secrets
import shutil
import time
import warnings
from datetime import datetime
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from trainctl.errors import ArtifactError

__all__ = [
    "CONFIG_FILE",
    "MODEL_FILE",
    "WEIGHTS_FILE",
    "OPTIMIZER_FILE",
    "STATE_FILE",
    "HISTORY_FILE",
    "METRICS_FILE",
    "PREPROCESSING_FILE",
    "CHECKPOINTS_DIR",
    "MANIFEST_FILE",
    "CheckpointWarning",
    "RunDir",
    "arrays_from_bytes",
    "arrays_to_bytes",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "config_hash",
    "load_weights",
    "load_weights_with_metadata",
    "read_json",
    "save_weights",
]

CONFIG_FILE = "config.yaml"
MODEL_FILE = "model.json"
WEIGHTS_FILE = "weights.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"
STATE_FILE = "state.json"
HISTORY_FILE = "history.csv"
METRICS_FILE = "metrics.json"
PREPROCESSING_FILE = "preprocessing.safetensors"
CHECKPOINTS_DIR = "checkpoints"
MANIFEST_FILE = "manifest.json"

# safetensors dtype codes that safetensors.numpy can turn into arrays, with item sizes.
_ST_DTYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_),
    "U8": np.dtype(np.uint8),
    "I8": np.dtype(np.int8),
    "U16": np.dtype(np.uint16),
    "I16": np.dtype(np.int16),
    "F16": np.dtype(np.float16),
    "U32": np.dtype(np.uint32),
    "I32": np.dtype(np.int32),
    "F32": np.dtype(np.float32),
    "U64": np.dtype(np.uint64),
    "I64": np.dtype(np.int64),
    "F64": np.dtype(np.float64),
    "C64": np.dtype(np.complex64),
}
_SAVABLE_DTYPES = {dt.name for dt in _ST_DTYPES.values()}
_MAX_HEADER_BYTES = 100_000_000  # the safetensors library's own limit

_TMP_PREFIX = ".tmp-"  # temp files and temp checkpoint dirs; never a final name
_DEL_PREFIX = ".del-"  # checkpoints being pruned
_CHECKPOINT_RE = re.compile(r"^(\d{8,})-([A-Za-z0-9][A-Za-z0-9._-]*)$")
_SIMPLE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_CHECKPOINT_FORMAT = "trainctl-checkpoint"


class CheckpointWarning(UserWarning):
    """A checkpoint was skipped because it is damaged; an older one is used instead."""


# --------------------------------------------------------------------------- atomic I/O


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


def _write_synced(path: Path, data: bytes) -> None:
    """Create `path` (must not exist) with `data`, fsynced; remove it again on failure."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        _write_fd(fd, data)
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


# --------------------------------------------------------------------------- safetensors

ExpectedSpec = Mapping[str, tuple[tuple[int, ...], Any]]


def _shape_str(shape: Any) -> str:
    return "[" + ",".join(str(d) for d in shape) + "]"


def arrays_to_bytes(
    arrays: Mapping[str, np.ndarray], metadata: Mapping[str, str] | None = None
) -> bytes:
    """Serialise named arrays (any shape, numeric/bool dtypes) to safetensors bytes."""
    import safetensors.numpy

    prepared: dict[str, np.ndarray] = {}
    for name, value in arrays.items():
        if not isinstance(name, str) or not name or name == "__metadata__":
            raise ValueError(f"invalid tensor name {name!r}")
        arr = np.asarray(value)
        if arr.dtype.name not in _SAVABLE_DTYPES:
            raise ValueError(
                f"{name}: dtype {arr.dtype} cannot be stored in safetensors "
                f"(supported: {', '.join(sorted(_SAVABLE_DTYPES))})"
            )
        # The library reads `nbytes` from the data pointer, so the array must be
        # C-contiguous, and the format is little-endian.
        arr = arr.astype(arr.dtype.newbyteorder("<"), order="C", copy=False)
        prepared[name] = arr
    meta: dict[str, str] | None = None
    if metadata is not None:
        meta = {}
        for key, val in metadata.items():
            if not isinstance(key, str) or not isinstance(val, str):
                raise ValueError(f"safetensors metadata must map str to str, got {key!r}: {val!r}")
            meta[key] = val
    return safetensors.numpy.save(prepared, metadata=meta)


def _parse_header(data: bytes | memoryview, source: str) -> tuple[dict[str, dict], dict[str, str]]:
    """Validate the safetensors layout of `data` without allocating anything large.

    Returns ({name: {"dtype", "shape", "data_offsets"}}, metadata).
    """
    size = len(data)
    if size == 0:
        raise ArtifactError(f"{source}: not a safetensors file (empty file)")
    if size < 8:
        raise ArtifactError(f"{source}: not a safetensors file ({size} bytes, too short for a header)")
    header_len = int.from_bytes(bytes(data[:8]), "little")
    if header_len > size - 8 or header_len > _MAX_HEADER_BYTES:
        raise ArtifactError(
            f"{source}: not a safetensors file or truncated "
            f"(header length field says {header_len} bytes, file has {size} bytes)"
        )
    if header_len < 2:
        raise ArtifactError(f"{source}: not a safetensors file (header length {header_len} is too small)")
    raw = bytes(data[8 : 8 + header_len])
    if raw[:1] != b"{":
        raise ArtifactError(f"{source}: not a safetensors file (header does not start with '{{')")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ArtifactError(f"{source}: invalid safetensors header: not UTF-8 (offset {exc.start})") from exc

    def _refuse_constant(token: str) -> Any:
        raise ValueError(f"{token} is not allowed")

    try:
        header = json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        raise ArtifactError(
            f"{source}: invalid safetensors header JSON at line {exc.lineno} col {exc.colno}: {exc.msg}"
        ) from exc
    except (ValueError, RecursionError) as exc:
        raise ArtifactError(f"{source}: invalid safetensors header JSON: {_reason(exc)}") from exc
    if not isinstance(header, dict):
        raise ArtifactError(f"{source}: invalid safetensors header: expected a JSON object")

    metadata_raw = header.pop("__metadata__", None)
    metadata: dict[str, str] = {}
    if metadata_raw is not None:
        if not isinstance(metadata_raw, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in metadata_raw.items()
        ):
            raise ArtifactError(f"{source}: invalid safetensors header: __metadata__ must map strings to strings")
        metadata = dict(metadata_raw)

    data_len = size - 8 - header_len
    spans: list[tuple[int, int, str]] = []
    for name, info in header.items():
        if not isinstance(info, dict):
            raise ArtifactError(f"{source}: invalid safetensors header: entry {name!r} is not an object")
        dtype_code = info.get("dtype")
        shape = info.get("shape")
        offsets = info.get("data_offsets")
        if not isinstance(dtype_code, str):
            raise ArtifactError(f"{source}: invalid safetensors header: {name}: missing dtype")
        if dtype_code not in _ST_DTYPES:
            raise ArtifactError(
                f"{source}: {name}: unsupported dtype {dtype_code!r} "
                f"(supported: {', '.join(_ST_DTYPES)})"
            )
        if not isinstance(shape, list) or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
        ):
            raise ArtifactError(f"{source}: invalid safetensors header: {name}: bad shape {shape!r}")
        if (
            not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
            or not 0 <= offsets[0] <= offsets[1]
        ):
            raise ArtifactError(f"{source}: invalid safetensors header: {name}: bad data_offsets {offsets!r}")
        nbytes = math.prod(shape) * _ST_DTYPES[dtype_code].itemsize
        if offsets[1] - offsets[0] != nbytes:
            raise ArtifactError(
                f"{source}: invalid safetensors header: {name}: data_offsets {offsets} hold "
                f"{offsets[1] - offsets[0]} bytes, shape {_shape_str(shape)} of {dtype_code} needs {nbytes}"
            )
        spans.append((offsets[0], offsets[1], name))

    spans.sort()
    end = 0
    for begin, stop, name in spans:
        if begin != end:
            raise ArtifactError(
                f"{source}: invalid safetensors header: {name}: data_offsets start at {begin}, expected {end}"
            )
        end = stop
    if end > data_len:
        raise ArtifactError(
            f"{source}: truncated safetensors file: tensors need {end} bytes of data, file has {data_len}"
        )
    if end < data_len:
        raise ArtifactError(
            f"{source}: damaged safetensors file: {data_len - end} unexpected bytes after the tensor data"
        )
    return header, metadata


def _check_expected(header: dict[str, dict], expected: ExpectedSpec, source: str) -> None:
    problems: list[str] = []
    missing = [name for name in expected if name not in header]
    unexpected = [name for name in header if name not in expected]
    if missing:
        problems.append("missing " + ", ".join(missing))
    if unexpected:
        problems.append("unexpected " + ", ".join(unexpected))
    for name, (shape, dtype) in expected.items():
        info = header.get(name)
        if info is None:
            continue
        want_shape = [int(d) for d in shape]
        if info["shape"] != want_shape:
            problems.append(
                f"{name}: expected shape {_shape_str(want_shape)}, file has {_shape_str(info['shape'])}"
            )
        if dtype is not None:
            want_dtype = np.dtype(dtype)
            have_dtype = _ST_DTYPES[info["dtype"]]
            if want_dtype != have_dtype:
                problems.append(f"{name}: expected dtype {want_dtype.name}, file has {have_dtype.name}")
    if problems:
        raise ArtifactError(f"{source}: does not match the model: " + "; ".join(problems))


def _decode(
    data: bytes, source: str, expected: ExpectedSpec | None
) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    header, metadata = _parse_header(data, source)
    if expected is not None:
        _check_expected(header, expected, source)
    import safetensors.numpy

    try:
        loaded = safetensors.numpy.load(data)
    except Exception as exc:  # the library's own checks, after ours
        raise ArtifactError(f"{source}: damaged safetensors file: {_reason(exc)}") from exc
    arrays: dict[str, np.ndarray] = {}
    for name in header:  # header order; the library's order is by offset
        arr = loaded[name]
        arrays[name] = arr if arr.flags.writeable else arr.copy()
    return arrays, metadata


def arrays_from_bytes(
    data: bytes, expected: ExpectedSpec | None = None, *, source: str = "<bytes>"
) -> dict[str, np.ndarray]:
    """Inverse of `arrays_to_bytes`, with the same validation as `load_weights`."""
    return _decode(bytes(data), source, expected)[0]


def save_weights(
    path: str | os.PathLike,
    arrays: Mapping[str, np.ndarray],
    metadata: Mapping[str, str] | None = None,
) -> None:
    """Save named arrays as a safetensors file, atomically."""
    atomic_write_bytes(path, arrays_to_bytes(arrays, metadata))


def load_weights_with_metadata(
    path: str | os.PathLike, expected: ExpectedSpec | None = None
) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Load a safetensors file as ({name: array}, metadata); see `load_weights`."""
    path = Path(path)
    return _decode(_read_bytes(path), str(path), expected)


def load_weights(
    path: str | os.PathLike, expected: ExpectedSpec | None = None
) -> dict[str, np.ndarray]:
    """Load a safetensors file after validating its layout.

    `expected` maps each name to (shape tuple, dtype); if given, missing or unexpected
    names and shape/dtype disagreements are all reported in one `ArtifactError`.
    """
    return load_weights_with_metadata(path, expected)[0]


# --------------------------------------------------------------------------- history CSV


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


# --------------------------------------------------------------------------- run directory


def _validate_simple_name(kind: str, name: str) -> None:
    if not isinstance(name, str) or not _SIMPLE_NAME_RE.match(name):
        raise ValueError(
            f"invalid {kind} {name!r}: use letters, digits, '.', '_' or '-', not starting with '.'/'-'"
        )


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


SLOW_CHECKPOINT_ENV = "TRAINCTL_TEST_SLOW_CHECKPOINT"


def _test_pause_before_rename() -> None:
    """Test hook for the kill-loop test: TRAINCTL_TEST_SLOW_CHECKPOINT=seconds sleeps after a
    checkpoint's files are durable and before its directory is renamed into place, so a
    SIGKILL can land inside a checkpoint write. Unset in normal use."""
    try:
        delay = float(os.environ.get(SLOW_CHECKPOINT_ENV) or 0)
    except ValueError:
        delay = 0.0
    if delay > 0:
        time.sleep(delay)


class RunDir:
    """One training run's directory; every write is atomic, every read validated."""

    def __init__(self, path: str | os.PathLike, *, checkpoints_dir: str = CHECKPOINTS_DIR):
        self.path = Path(path)
        self.checkpoints_dir = checkpoints_dir  # resume checkpoints; model_checkpoint keeps its own

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    # ---- creation / opening

    @classmethod
    def create(
        cls,
        runs_root: str | os.PathLike,
        name: str,
        out: str | os.PathLike | None = None,
        *,
        now: datetime | None = None,
    ) -> "RunDir":
        """Make a new run directory: `out` if given (must be absent or empty), else
        runs_root/name/YYYYmmdd-HHMMSS, with -1, -2, ... appended if that exists."""
        if out is not None:
            path = Path(out)
            try:
                path.mkdir(parents=True, exist_ok=True)
            except FileExistsError as exc:
                raise ArtifactError(f"cannot create run directory {path}: a file is in the way") from exc
            except OSError as exc:
                raise ArtifactError(f"cannot create run directory {path}: {_reason(exc)}") from exc
            try:
                if any(path.iterdir()):
                    raise ArtifactError(f"run directory {path} already exists and is not empty")
            except OSError as exc:
                raise ArtifactError(f"cannot use run directory {path}: {_reason(exc)}") from exc
            _fsync_dir(path.parent)
            return cls(path)

        if not isinstance(name, str) or not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name:
            raise ArtifactError(f"invalid run name {name!r}: it must be one path component")
        parent = Path(runs_root) / name
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ArtifactError(f"cannot create {parent}: {_reason(exc)}") from exc
        stamp = (now or datetime.now()).strftime("%Y%m%d-%H%M%S")
        for suffix in range(0, 10_000):
            path = parent / (stamp if suffix == 0 else f"{stamp}-{suffix}")
            try:
                path.mkdir()  # exclusive: two runs started in the same second get different dirs
            except FileExistsError:
                continue
            except OSError as exc:
                raise ArtifactError(f"cannot create run directory {path}: {_reason(exc)}") from exc
            _fsync_dir(parent)
            return cls(path)
        raise ArtifactError(f"cannot create a run directory under {parent}: too many runs named {stamp}")

    @classmethod
    def open(cls, path: str | os.PathLike, *, require_weights: bool = True) -> "RunDir":
        """Open an existing run directory (config.yaml, model.json and, unless
        `require_weights=False` as for resuming a killed run, weights.safetensors)."""
        path = Path(path)
        if not path.exists():
            raise ArtifactError(f"{path}: run directory not found")
        if not path.is_dir():
            raise ArtifactError(f"{path}: not a run directory (not a directory)")
        required = [CONFIG_FILE, MODEL_FILE] + ([WEIGHTS_FILE] if require_weights else [])
        missing = [f for f in required if not (path / f).is_file()]
        if missing:
            raise ArtifactError(f"{path}: not a run directory (missing {', '.join(missing)})")
        return cls(path)

    # ---- paths

    def file(self, name: str) -> Path:
        return self.path / name

    @property
    def checkpoints_path(self) -> Path:
        return self.path / self.checkpoints_dir

    # ---- writers

    def write_config(self, text: str) -> None:
        """Save the resolved config (YAML text)."""
        atomic_write_text(self.file(CONFIG_FILE), text)

    def write_model(self, architecture: Mapping[str, Any]) -> None:
        """Save the architecture (a JSON object)."""
        if not isinstance(architecture, Mapping):
            raise TypeError(f"model architecture must be a dict, got {type(architecture).__name__}")
        atomic_write_json(self.file(MODEL_FILE), dict(architecture))

    def write_weights(self, arrays: Mapping[str, np.ndarray], metadata: Mapping[str, str] | None = None) -> None:
        save_weights(self.file(WEIGHTS_FILE), arrays, metadata)

    def write_optimizer(self, arrays: Mapping[str, np.ndarray], metadata: Mapping[str, str] | None = None) -> None:
        """Save optimizer slots (and "iterations") with str->str metadata (e.g. its type)."""
        save_weights(self.file(OPTIMIZER_FILE), arrays, metadata)

    def write_preprocessing(self, arrays: Mapping[str, np.ndarray]) -> None:
        save_weights(self.file(PREPROCESSING_FILE), arrays)

    def config_hash(self) -> str:
        """Hash of the config.yaml in this run directory."""
        data = _read_bytes(self.file(CONFIG_FILE))
        try:
            return config_hash(data.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise ArtifactError(f"{self.file(CONFIG_FILE)}: not UTF-8 text") from exc

    def write_state(self, state: Mapping[str, Any]) -> None:
        """Save the training position (epoch, step, RNG info, ...) plus "config_hash"."""
        if not isinstance(state, Mapping):
            raise TypeError(f"state must be a dict, got {type(state).__name__}")
        atomic_write_json(self.file(STATE_FILE), {**state, "config_hash": self.config_hash()})

    def append_history(self, row: Mapping[str, Any]) -> None:
        """Add one epoch's row to history.csv (rewritten atomically).

        Columns are "epoch" then the union of log keys in first-seen order; a key absent
        from a row is an empty cell. Rows already there with an epoch >= this row's epoch
        are dropped first: they were written by a run that was killed and is being resumed
        from an earlier checkpoint, and are superseded by the re-run.
        """
        if "epoch" not in row:
            raise ValueError("history row needs an 'epoch' key")
        epoch = row["epoch"]
        if isinstance(epoch, np.integer):
            epoch = int(epoch)
        if not isinstance(epoch, int) or isinstance(epoch, bool):
            raise TypeError(f"history epoch must be an int, got {epoch!r}")
        path = self.file(HISTORY_FILE)
        columns: list[str] = ["epoch"]
        rows: list[Mapping[str, Any]] = []
        if path.exists():
            old_columns, old_rows = _parse_history(_read_bytes(path), str(path))
            columns = old_columns or columns
            rows = [r for r in old_rows if r["epoch"] < epoch]
        new_row = {**row, "epoch": epoch}
        for key in new_row:
            if not isinstance(key, str) or not key:
                raise ValueError(f"invalid history column name {key!r}")
            if key not in columns:
                columns.append(key)
        rows.append(new_row)
        buf = io.StringIO(newline="")
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(columns)
        for r in rows:
            writer.writerow([_format_cell(key, r.get(key)) for key in columns])
        atomic_write_text(path, buf.getvalue())

    def write_metrics(self, metrics: Mapping[str, Any]) -> None:
        if not isinstance(metrics, Mapping):
            raise TypeError(f"metrics must be a dict, got {type(metrics).__name__}")
        atomic_write_json(self.file(METRICS_FILE), dict(metrics))

    # ---- readers

    def read_config_text(self) -> str:
        path = self.file(CONFIG_FILE)
        try:
            return _read_bytes(path).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ArtifactError(f"{path}: not UTF-8 text (bad byte at offset {exc.start})") from exc

    def _read_json_object(self, name: str) -> dict[str, Any]:
        path = self.file(name)
        obj = read_json(path)
        if not isinstance(obj, dict):
            raise ArtifactError(f"{path}: expected a JSON object, found {type(obj).__name__}")
        return obj

    def read_model(self) -> dict[str, Any]:
        return self._read_json_object(MODEL_FILE)

    def read_weights(self, expected: ExpectedSpec | None = None) -> dict[str, np.ndarray]:
        return load_weights(self.file(WEIGHTS_FILE), expected)

    def read_optimizer(self) -> tuple[dict[str, np.ndarray], dict[str, str]]:
        """(slot arrays incl. "iterations", metadata)."""
        return load_weights_with_metadata(self.file(OPTIMIZER_FILE))

    def read_preprocessing(self) -> dict[str, np.ndarray] | None:
        """Standardisation statistics, or None if this run has none."""
        path = self.file(PREPROCESSING_FILE)
        if not path.exists():
            return None
        return load_weights(path)

    def read_state(self, *, verify_config: bool = True) -> dict[str, Any]:
        """The saved training position; by default refuses a state written for another config."""
        state = self._read_json_object(STATE_FILE)
        if verify_config:
            saved = state.get("config_hash")
            current = self.config_hash()
            if saved != current:
                raise ArtifactError(
                    f"{self.file(STATE_FILE)}: written for a different config "
                    f"(config_hash {saved}, {CONFIG_FILE} has {current})"
                )
        return state

    def read_history(self) -> list[dict[str, int | float]]:
        """Rows of history.csv as dicts (empty cells omitted); [] if there is none yet."""
        path = self.file(HISTORY_FILE)
        if not path.exists():
            return []
        return _parse_history(_read_bytes(path), str(path))[1]

    def read_metrics(self) -> dict[str, Any]:
        return self._read_json_object(METRICS_FILE)

    # ---- checkpoints

    def list_checkpoints(self) -> list[tuple[int, str, Path]]:
        """Finished checkpoint dirs as (sequence, tag, path), oldest first (temp dirs ignored)."""
        root = self.checkpoints_path
        try:
            entries = list(os.scandir(root))
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise ArtifactError(f"cannot list {root}: {_reason(exc)}") from exc
        found = []
        for entry in entries:
            m = _CHECKPOINT_RE.match(entry.name)
            if m and entry.is_dir(follow_symlinks=False):
                found.append((int(m.group(1)), m.group(2), Path(entry.path)))
        found.sort()
        return found

    def _remove_leftovers(self) -> None:
        root = self.checkpoints_path
        try:
            entries = list(os.scandir(root))
        except FileNotFoundError:
            return
        for entry in entries:
            if entry.name.startswith((_TMP_PREFIX, _DEL_PREFIX)):
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path, ignore_errors=True)
                else:
                    _unlink_quietly(Path(entry.path))

    def save_checkpoint(self, tag: str, files: Mapping[str, bytes], keep_last: int) -> Path:
        """Write `files` as checkpoints/<seq>-<tag>/ atomically, then prune to `keep_last`.

        The files and a manifest.json (sha256 + size of each) are written and fsynced in a
        temp dir, which is renamed into place; only after that rename is durable are the
        oldest checkpoints removed. Leftover temp dirs of a crashed save are removed first.
        Returns the new checkpoint's path.
        """
        _validate_simple_name("checkpoint tag", tag)
        if not isinstance(keep_last, int) or isinstance(keep_last, bool) or keep_last < 1:
            raise ValueError(f"keep_last must be an int >= 1, got {keep_last!r}")
        for fname in files:
            _validate_simple_name("checkpoint file name", fname)
            if fname == MANIFEST_FILE:
                raise ValueError(f"checkpoint file name {MANIFEST_FILE!r} is reserved")
        root = self.checkpoints_path
        try:
            if not root.is_dir():
                root.mkdir()
                _fsync_dir(self.path)
        except OSError as exc:
            raise ArtifactError(f"cannot create {root}: {_reason(exc)}") from exc
        self._remove_leftovers()

        existing = self.list_checkpoints()
        sequence = (existing[-1][0] + 1) if existing else 1
        final = root / f"{sequence:08d}-{tag}"
        tmp = root / f"{_TMP_PREFIX}{sequence:08d}-{tag}.{secrets.token_hex(6)}"
        manifest = {
            "format": _CHECKPOINT_FORMAT,
            "version": 1,
            "sequence": sequence,
            "tag": tag,
            "files": {
                fname: {"sha256": _sha256(bytes(data)), "size": len(data)} for fname, data in files.items()
            },
        }
        try:
            tmp.mkdir()
            for fname, data in files.items():
                _write_synced(tmp / fname, bytes(data))
            _write_synced(tmp / MANIFEST_FILE, _json_dumps(manifest).encode("utf-8"))
            _fsync_dir(tmp)
            _test_pause_before_rename()
            os.rename(tmp, final)
        except (OSError, ArtifactError) as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            reason = str(exc) if isinstance(exc, ArtifactError) else _reason(exc)
            raise ArtifactError(f"cannot write checkpoint {final}: {reason}") from exc
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        _fsync_dir(root)

        # Prune only now that the new checkpoint is durable; rename first so a crash
        # mid-delete leaves a ".del-" leftover, never a half-deleted checkpoint.
        older = [p for seq, _, p in self.list_checkpoints() if seq != sequence]
        to_delete = older[: max(0, len(older) - (keep_last - 1))]
        for path in to_delete:
            doomed = root / f"{_DEL_PREFIX}{path.name}.{secrets.token_hex(6)}"
            try:
                os.rename(path, doomed)
            except OSError as exc:
                raise ArtifactError(f"cannot remove old checkpoint {path}: {_reason(exc)}") from exc
        if to_delete:
            _fsync_dir(root)
            self._remove_leftovers()
        return final

    def _read_checkpoint(self, sequence: int, tag: str, path: Path) -> dict[str, bytes]:
        """Verified contents of one checkpoint dir; ArtifactError says what is wrong."""
        manifest = read_json(path / MANIFEST_FILE)
        if (
            not isinstance(manifest, dict)
            or manifest.get("format") != _CHECKPOINT_FORMAT
            or not isinstance(manifest.get("files"), dict)
        ):
            raise ArtifactError(f"{path / MANIFEST_FILE}: not a trainctl checkpoint manifest")
        if manifest.get("sequence") != sequence or manifest.get("tag") != tag:
            raise ArtifactError(
                f"{path / MANIFEST_FILE}: says sequence {manifest.get('sequence')!r} tag "
                f"{manifest.get('tag')!r}, directory name says {sequence} {tag!r}"
            )
        out: dict[str, bytes] = {}
        for fname, info in manifest["files"].items():
            if not isinstance(fname, str) or not _SIMPLE_NAME_RE.match(fname) or fname == MANIFEST_FILE:
                raise ArtifactError(f"{path / MANIFEST_FILE}: bad file name {fname!r}")
            if not isinstance(info, dict) or not isinstance(info.get("sha256"), str) or not isinstance(info.get("size"), int):
                raise ArtifactError(f"{path / MANIFEST_FILE}: bad entry for {fname}")
            data = _read_bytes(path / fname)
            if len(data) != info["size"]:
                raise ArtifactError(f"{path / fname}: size {len(data)}, manifest says {info['size']}")
            if _sha256(data) != info["sha256"]:
                raise ArtifactError(f"{path / fname}: sha256 does not match the manifest")
            out[fname] = data
        return out

    def latest_checkpoint(self) -> tuple[str, dict[str, bytes]] | None:
        """The newest intact checkpoint as (tag, {file name: bytes}), or None.

        Newest means highest sequence number (not mtime). A damaged checkpoint (bad or
        missing manifest, missing file, wrong size or sha256) is skipped with a
        `CheckpointWarning` naming it, and the previous one is tried. Temp dirs left by a
        crashed save are ignored.
        """
        for sequence, tag, path in reversed(self.list_checkpoints()):
            try:
                return tag, self._read_checkpoint(sequence, tag, path)
            except ArtifactError as exc:
                detail = str(exc).replace(f"{path}{os.sep}", "")
                warnings.warn(
                    f"skipping damaged checkpoint {path} ({detail}); falling back to an older one",
                    CheckpointWarning,
                    stacklevel=2,
                )
        return None
