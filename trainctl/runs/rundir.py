"""RunDir: one training run's directory; every write is atomic, every read validated."""

from __future__ import annotations

import csv
import io
import os
from datetime import datetime
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from trainctl.errors import ArtifactError
from trainctl.runs.atomic import (
    _fsync_dir,
    _read_bytes,
    _reason,
    atomic_write_json,
    atomic_write_text,
    config_hash,
    read_json,
)
from trainctl.runs.checkpoints import CheckpointStore
from trainctl.runs.files import (
    CHECKPOINTS_DIR,
    CONFIG_FILE,
    HISTORY_FILE,
    METRICS_FILE,
    MODEL_FILE,
    OPTIMIZER_FILE,
    PREPROCESSING_FILE,
    STATE_FILE,
    WEIGHTS_FILE,
)
from trainctl.runs.history import _format_cell, _parse_history
from trainctl.runs.tensors import ExpectedSpec, load_weights, load_weights_with_metadata, save_weights


class RunDir(CheckpointStore):
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
