"""safetensors I/O: arrays to bytes and back, with the header validated before the
library is trusted with the bytes. Nothing here pickles.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from trainctl.errors import ArtifactError
from trainctl.runs.atomic import _read_bytes, _reason, atomic_write_bytes

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
