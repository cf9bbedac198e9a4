"""Checkpoints that resume exactly, and stopping cleanly on SIGINT/SIGTERM.

A checkpoint (RunDir.save_checkpoint: temp dir, fsync, rename, sha256 manifest) holds:

    weights.safetensors     the model's weights after the last finished step
    optimizer.safetensors   optimizer slots, accumulated scalars and `iterations`
    callbacks.safetensors   arrays callbacks keep (early_stopping's best weights)
    state.json              position (epoch, batch, step), the live learning rate, callback
                            states, dropout RNG states, the epoch's running sums, the history

Resuming from any checkpoint replays the rest of training exactly: the data order of an
epoch depends only on (seed, epoch), `start_batch` skips the batches already trained, and
`EpochTotals` continues the epoch's size-weighted sums so the resumed epoch logs the same
values an uninterrupted run logs. Everything here works through callbacks.
"""

from __future__ import annotations

import contextlib
import math
import signal
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from trainctl.errors import ArtifactError, TrainctlError
from trainctl.runs.files import CALLBACKS_FILE, OPTIMIZER_FILE, STATE_FILE, WEIGHTS_FILE
from trainctl.train.callbacks import Callback, CSVLogger, EarlyStopping, WeightHistory

CHECKPOINT_FORMAT = 1
MODEL_CHECKPOINTS_DIR = "model_checkpoints"  # where a configured model_checkpoint callback saves
SIGNAL_EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}


class TrainingInterrupted(TrainctlError):
    """SIGINT/SIGTERM stopped training after a finished batch; a checkpoint was saved."""

    def __init__(self, signum: int, run_path: Path, epoch: int, batch: int, checkpoint: Path | None):
        self.signum, self.run_path, self.epoch, self.batch, self.checkpoint = signum, run_path, epoch, batch, checkpoint
        self.exit_code = SIGNAL_EXIT_CODES.get(signum, 130)
        super().__init__(f"{signal.Signals(signum).name} received")


# -- the epoch's running sums and the history, carried across a resume ---------------------
class EpochTotals(Callback):
    """Size-weighted sums of the epoch's batch values, computed exactly as the fit loop does
    (`totals[i] += value * n` in float64, in batch order), continued from a checkpoint in the
    middle of an epoch. At epoch end it writes the epoch means into the logs, so a resumed
    epoch logs what an uninterrupted one logs; it must come first among the callbacks.
    `epochs`/`rows` are the epoch logs so far (the run's history, across resumes)."""

    def __init__(self) -> None:
        super().__init__()
        self.totals: np.ndarray | None = None
        self.seen = 0
        self.epochs: list[int] = []
        self.rows: list[dict[str, float]] = []
        self._continue_epoch: int | None = None

    def restore(self, state: dict[str, Any]) -> None:
        self.epochs = [int(e) for e in state.get("history_epochs", [])]
        self.rows = [dict(r) for r in state.get("history", [])]
        if state.get("totals") is not None:
            self.totals = np.array(state["totals"], np.float64)
            self.seen = int(state["seen"])
            self._continue_epoch = int(state["epoch"])

    def state(self, mid_epoch: bool) -> dict[str, Any]:
        return {"history_epochs": list(self.epochs), "history": [dict(r) for r in self.rows],
                "totals": self.totals.tolist() if mid_epoch and self.totals is not None else None,
                "seen": self.seen if mid_epoch else 0}

    def on_epoch_begin(self, epoch, logs=None):
        if self._continue_epoch == epoch and self.totals is not None:
            self._continue_epoch = None
            return
        self._continue_epoch = None
        self.totals = np.zeros(len(self.params.get("metrics") or ["loss"]))
        self.seen = 0

    def on_batch_end(self, batch, logs=None):
        logs = logs or {}
        n = logs["size"]
        for i, key in enumerate(self.params.get("metrics") or ["loss"]):
            self.totals[i] += logs[key] * n
        self.seen += n

    def on_epoch_end(self, epoch, logs=None):
        if logs is None or self.totals is None:
            return
        keys = self.params.get("metrics") or ["loss"]
        logs.update(zip(keys, (self.totals / max(self.seen, 1)).tolist()))
        self.epochs.append(epoch)
        self.rows.append({k: float(v) for k, v in logs.items()})

    def final_metrics(self) -> dict[str, float]:
        final: dict[str, float] = {}
        for row in self.rows:
            final.update(row)
        return final


# -- writing and reading checkpoints ----------------------------------------------------------
def _all_finite(values: Any) -> bool:
    for value in values:
        try:
            if not math.isfinite(float(value)):
                return False
        except (TypeError, ValueError):
            continue
    return True


def _configured_rate(optimizer) -> float:
    return float(getattr(optimizer.params, "learning_rate", optimizer.learning_rate))


class CheckpointWriter:
    """Snapshots the whole training state into checkpoint files and restores it."""

    def __init__(self, run_dir, model, user_callbacks: list[Callback], totals: EpochTotals, config_hash: str):
        self.run_dir, self.model, self.user_callbacks = run_dir, model, user_callbacks
        self.totals, self.config_hash = totals, config_hash
        self.last_saved: Path | None = None
        self.last_saved_step: int | None = None

    # -- snapshot
    def files(self, epoch: int, batch: int, tag: str) -> dict[str, bytes]:
        """Checkpoint files for the position (next epoch to run, first batch of it to run)."""
        from trainctl.runs.atomic import _json_dumps
        from trainctl.runs.tensors import arrays_to_bytes

        model, optimizer = self.model, self.model.optimizer
        callback_states, callback_arrays = [], {}
        for index, callback in enumerate(self.user_callbacks):
            entry: dict[str, Any] = {"index": index, "class": type(callback).__name__}
            if isinstance(callback, EarlyStopping):
                entry["state"] = callback.get_state()
                for name, value in (callback.best_weights or {}).items():
                    callback_arrays[f"{index}/best_weights/{name}"] = value
            elif isinstance(callback, WeightHistory):
                entry["state"] = {"epochs": callback.epochs, "values": callback.values}
            elif hasattr(callback, "get_state"):
                entry["state"] = callback.get_state()
            callback_states.append(entry)
        layer_states = {layer.name: state for layer in model.layers if (state := layer.get_state())}
        state = {
            "format": CHECKPOINT_FORMAT, "tag": tag, "config_hash": self.config_hash,
            "epoch": epoch, "batch": batch, "step": int(optimizer.iterations),
            "stopped": bool(getattr(model, "stop_training", False)),
            "learning_rate": float(optimizer.learning_rate),
            "configured_learning_rate": _configured_rate(optimizer),
            "callbacks": callback_states, "rng": layer_states,  # key kept from format 1: layer states
            **self.totals.state(mid_epoch=batch > 0),
        }
        return {
            WEIGHTS_FILE: arrays_to_bytes({w.name: w.value for w in model.weights}),
            OPTIMIZER_FILE: arrays_to_bytes(optimizer.state(), {"type": optimizer.get_config()["type"]}),
            CALLBACKS_FILE: arrays_to_bytes(callback_arrays),
            STATE_FILE: _json_dumps(state).encode("utf-8"),
        }

    def save(self, tag: str, epoch: int, batch: int, keep_last: int, store=None, logs: dict | None = None) -> Path | None:
        """Write a checkpoint unless the logs or the weights are not finite (it would replace a
        good one); returns its path or None when skipped."""
        if logs is not None and not _all_finite(v for k, v in logs.items() if k not in ("batch", "size")):
            return None
        if not all(np.isfinite(w.value).all() for w in self.model.weights):
            return None
        files = self.files(epoch, batch, tag)
        path = (store or self.run_dir).save_checkpoint(tag, files, keep_last)
        if store is None:
            self.last_saved, self.last_saved_step = path, int(self.model.optimizer.iterations)
        return path

    # -- restore
    def restore(self, checkpoint: dict[str, bytes], source: str) -> dict[str, Any]:
        """Put a checkpoint's state into the model, optimizer and callbacks; returns its state."""
        import json

        from trainctl.runs.tensors import arrays_from_bytes

        try:
            state = json.loads(checkpoint[STATE_FILE].decode("utf-8"))
            if state.get("format") != CHECKPOINT_FORMAT:
                raise ArtifactError(f"{source}/state.json: unknown checkpoint format {state.get('format')!r}")
            model, optimizer = self.model, self.model.optimizer
            expected = {w.name: (tuple(w.value.shape), w.value.dtype.name) for w in model.weights}
            weights = arrays_from_bytes(checkpoint[WEIGHTS_FILE], expected,
                                        source=f"{source}/weights.safetensors")
            model.set_weights(weights, source=f"{source}/weights.safetensors")
            optimizer.load_state(arrays_from_bytes(checkpoint[OPTIMIZER_FILE],
                                                   source=f"{source}/optimizer.safetensors"))
            optimizer.learning_rate = float(state["learning_rate"])
            arrays = arrays_from_bytes(checkpoint[CALLBACKS_FILE], source=f"{source}/{CALLBACKS_FILE}")
            for layer in model.layers:
                if layer.name in state["rng"]:
                    layer.set_state(state["rng"][layer.name])
            saved = {entry["index"]: entry for entry in state["callbacks"]}
            for index, callback in enumerate(self.user_callbacks):
                entry = saved.get(index)
                if entry is None or entry["class"] != type(callback).__name__ or "state" not in entry:
                    continue
                callback.set_model(model)
                if isinstance(callback, EarlyStopping):
                    prefix = f"{index}/best_weights/"
                    best = {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}
                    callback.set_state(entry["state"], best or None)
                elif isinstance(callback, WeightHistory):
                    callback.epochs = [int(e) for e in entry["state"]["epochs"]]
                    callback.values = {k: [list(v) for v in vals] for k, vals in entry["state"]["values"].items()}
                elif hasattr(callback, "set_state"):
                    callback.set_state(entry["state"])
            # After reduce_lr_on_plateau's own restore. A rate the config now sets differently
            # (a forced resume with a new learning_rate) wins over the saved live rate.
            if state.get("configured_learning_rate") == _configured_rate(optimizer):
                optimizer.learning_rate = float(state["learning_rate"])
            else:
                optimizer.learning_rate = _configured_rate(optimizer)
            self.totals.restore(state)
        except ArtifactError:
            raise
        except TrainctlError as error:
            raise ArtifactError(f"{source}: {error}") from None
        except (KeyError, TypeError, ValueError) as error:
            raise ArtifactError(f"{source}: checkpoint state does not fit this model and config ({error})") from None
        self.last_saved_step = int(state["step"])
        return state


# -- callbacks that checkpoint ----------------------------------------------------------------
class Checkpointer(Callback):
    """Resume checkpoints: at the start, at the end of every epoch and every `every_steps`
    optimizer steps, keeping the last `keep_last`. Must come last among the callbacks, so
    the state it saves includes every other callback's reaction to the epoch."""

    def __init__(self, writer: CheckpointWriter, every_steps: int | None, keep_last: int, resumed: bool):
        super().__init__()
        self.writer, self.every_steps, self.keep_last, self.resumed = writer, every_steps, keep_last, resumed
        self.epoch = 0

    def on_train_begin(self, logs=None):
        self.epoch = self.params.get("initial_epoch", 0)
        if not self.resumed:
            self.writer.save("start", self.epoch, 0, self.keep_last)

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_batch_end(self, batch, logs=None):
        if self.every_steps is None:
            return
        step = int(self.model.optimizer.iterations)
        if step % self.every_steps == 0:
            self.writer.save(f"step-{step:08d}", self.epoch, batch + 1, self.keep_last, logs=logs)

    def on_epoch_end(self, epoch, logs=None):
        self.writer.save(f"epoch-{epoch + 1:04d}", epoch + 1, 0, self.keep_last, logs=logs)

    def save_now(self, batch: int, logs: dict | None) -> Path | None:
        """The interrupt checkpoint after finished batch `batch` (unless this step is saved)."""
        step = int(self.model.optimizer.iterations)
        if self.writer.last_saved_step == step and self.writer.last_saved is not None:
            return self.writer.last_saved
        return self.writer.save(f"step-{step:08d}", self.epoch, batch + 1, self.keep_last, logs=logs)


class StopOnSignal(Callback):
    """SIGINT/SIGTERM set a flag; after the current batch this callback checkpoints and raises
    TrainingInterrupted. A second signal interrupts at once (KeyboardInterrupt)."""

    def __init__(self, checkpointer: Checkpointer, run_path: Path):
        super().__init__()
        self.checkpointer, self.run_path = checkpointer, run_path
        self.signum: int | None = None
        self.epoch = 0

    def handle(self, signum, frame) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum

    @contextlib.contextmanager
    def installed(self) -> Iterator["StopOnSignal"]:
        import threading

        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = {s: signal.signal(s, self.handle) for s in SIGNAL_EXIT_CODES}
        try:
            yield self
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_batch_end(self, batch, logs=None):
        if self.signum is not None:
            path = self.checkpointer.save_now(batch, logs)
            raise TrainingInterrupted(self.signum, self.run_path, self.epoch, batch, path or self.checkpointer.writer.last_saved)

    def on_epoch_end(self, epoch, logs=None):
        if self.signum is not None:  # the checkpointer (before this) saved the epoch
            raise TrainingInterrupted(self.signum, self.run_path, epoch, -1, self.checkpointer.writer.last_saved)


def model_checkpoint_saver(writer: CheckpointWriter, callback, run_dir) -> Callable[[str, dict], Any]:
    """The saver of a configured model_checkpoint: full checkpoints in <run>/model_checkpoints."""
    from trainctl.runs.rundir import RunDir

    store = RunDir(run_dir.path, checkpoints_dir=MODEL_CHECKPOINTS_DIR)

    def save(tag: str, logs: dict[str, Any]) -> Path | None:
        if "batch" in logs:
            return writer.save(tag, int(logs["epoch"]), int(logs["batch"]) + 1, callback.keep_last, store=store)
        return writer.save(tag, int(logs["epoch"]) + 1, 0, callback.keep_last, store=store)

    return save


# -- files a resumed run rewrites ----------------------------------------------------------------
def trim_history(path: Path, keep_through: int, first_epoch: int, separator: str = ",") -> None:
    """Drop rows of a per-epoch CSV (history.csv: 1-based epochs; csv_logger: 0-based) from
    epochs the resumed run will redo, so it ends up as an uninterrupted run's file."""
    from trainctl.runs.atomic import atomic_write_text

    if not path.exists():
        return
    try:
        lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    except (OSError, UnicodeDecodeError) as error:
        raise ArtifactError(f"cannot read {path}: {getattr(error, 'strerror', None) or error}") from None
    kept = lines[:1]
    for line in lines[1:]:
        head = line.split(separator, 1)[0].strip()
        try:
            epoch = int(head)
        except ValueError:
            continue
        if epoch - first_epoch < keep_through:
            kept.append(line)
    if kept != lines:
        atomic_write_text(path, "".join(kept))


def prepare_csv_loggers(callbacks: list[Callback], run_path: Path, resumed_epoch: int | None) -> None:
    """csv_logger files go in the run directory; on resume, keep the rows of finished epochs."""
    for callback in callbacks:
        if isinstance(callback, CSVLogger):
            callback.base_dir = run_path
            if resumed_epoch is not None:
                trim_history(callback.path, resumed_epoch, 0, callback.separator)
                callback.append = True
