"""Checkpoints that resume exactly, and stopping cleanly on SIGINT/SIGTERM.

A checkpoint (RunDir.save_checkpoint: temp dir, fsync, rename, sha256 manifest) holds:

    weights.safetensors     the model's weights after the last finished step
    optimizer.safetensors   optimizer slots, accumulated scalars and `iterations`
    callbacks.safetensors   arrays callbacks keep (Callback.get_state's arrays, "<index>/<name>")
    state.json              position (epoch, batch, step), the live learning rate, callback
                            states, layer states (dropout RNG), the epoch's running sums, the history

Resuming from any checkpoint replays the rest of training exactly: the data order of an
epoch depends only on (seed, epoch), `start_batch` skips the batches already trained, and
the fit loop's EpochAccumulator continues the epoch's size-weighted sums so the resumed
epoch logs the same values an uninterrupted run logs. Everything here works through the
Callback contract (train/callbacks/base.py); nothing asks a callback what class it is.
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
from trainctl.train.callbacks.base import Callback, configured_rate
from trainctl.train.epoch import EpochAccumulator

CHECKPOINT_FORMAT = 1
SIGNAL_EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}


class TrainingInterrupted(TrainctlError):
    """SIGINT/SIGTERM stopped training after a finished batch; a checkpoint was saved."""

    def __init__(self, signum: int, run_path: Path, epoch: int, batch: int, checkpoint: Path | None):
        self.signum, self.run_path, self.epoch, self.batch, self.checkpoint = signum, run_path, epoch, batch, checkpoint
        self.exit_code = SIGNAL_EXIT_CODES.get(signum, 130)
        super().__init__(f"{signal.Signals(signum).name} received")


# -- the history, carried across a resume ---------------------------------------------------
class RunHistory(Callback):
    """The epoch logs of the whole run, across resumes (a checkpoint carries them). Comes
    first among the callbacks, so a row holds what the loop logged, before callbacks add
    their own keys (lr, weights)."""

    def setup(self) -> None:
        self.epochs: list[int] = []
        self.rows: list[dict[str, float]] = []

    def get_state(self) -> tuple[dict[str, Any], dict]:
        return {"history_epochs": list(self.epochs), "history": [dict(r) for r in self.rows]}, {}

    def set_state(self, state: dict[str, Any], arrays: dict) -> None:
        self.epochs = [int(e) for e in state.get("history_epochs", [])]
        self.rows = [dict(r) for r in state.get("history", [])]

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
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


class CheckpointWriter:
    """Snapshots the whole training state into checkpoint files and restores it. Each store's
    checkpoints are made durable by a CheckpointSyncer of its own; `close()` waits for them."""

    def __init__(self, run_dir, model, user_callbacks: list[Callback], history: RunHistory,
                 epoch_totals: EpochAccumulator, config_hash: str):
        self.run_dir, self.model, self.user_callbacks = run_dir, model, user_callbacks
        self.history, self.epoch_totals, self.config_hash = history, epoch_totals, config_hash
        self.last_saved: Path | None = None
        self.last_saved_step: int | None = None
        self._syncers: dict[Path, Any] = {}  # checkpoints dir -> its CheckpointSyncer

    # -- snapshot
    def files(self, epoch: int, batch: int, tag: str) -> dict[str, bytes]:
        """Checkpoint files for the position (next epoch to run, first batch of it to run)."""
        from trainctl.runs.atomic import _json_dumps
        from trainctl.runs.tensors import arrays_to_bytes

        model, optimizer = self.model, self.model.optimizer
        callback_states, callback_arrays = [], {}
        for index, callback in enumerate(self.user_callbacks):
            values, arrays = callback.get_state()
            callback_states.append({"index": index, "class": type(callback).__name__, "state": values})
            callback_arrays.update({f"{index}/{name}": array for name, array in arrays.items()})
        layer_states = {layer.name: state for layer in model.layers if (state := layer.get_state())}
        state = {
            "format": CHECKPOINT_FORMAT, "tag": tag, "config_hash": self.config_hash,
            "epoch": epoch, "batch": batch, "step": int(optimizer.iterations),
            "stopped": bool(getattr(model, "stop_training", False)),
            "learning_rate": float(optimizer.learning_rate),
            "configured_learning_rate": configured_rate(optimizer),
            "callbacks": callback_states, "rng": layer_states,  # key kept from format 1: layer states
            **self.history.get_state()[0],
            # the running sums of an epoch in progress (a resume continues them)
            **(self.epoch_totals.get_state() if batch > 0 else {"totals": None, "seen": 0}),
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
        target = store or self.run_dir
        path = target.save_checkpoint(tag, files, keep_last, syncer=self._syncer(target))
        if store is None:
            self.last_saved, self.last_saved_step = path, int(self.model.optimizer.iterations)
        return path

    def _syncer(self, store):
        from trainctl.runs.checkpoints import CheckpointSyncer

        key = Path(store.checkpoints_path)
        if key not in self._syncers:
            self._syncers[key] = CheckpointSyncer(store)
        return self._syncers[key]

    def close(self, raise_failure: bool = True) -> None:
        """Wait until every checkpoint saved is durable and pruned (see CheckpointSyncer)."""
        for syncer in self._syncers.values():
            syncer.close(raise_failure)

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
                prefix = f"{index}/"
                callback.set_state(entry["state"], {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)})
            # After reduce_lr_on_plateau's own restore. A rate the config now sets differently
            # (a forced resume with a new learning_rate) wins over the saved live rate.
            if state.get("configured_learning_rate") == configured_rate(optimizer):
                optimizer.learning_rate = float(state["learning_rate"])
            else:
                optimizer.learning_rate = configured_rate(optimizer)
            self.history.set_state(state, {})
            if state.get("totals") is not None:
                self.epoch_totals.set_state(state)
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

    batch_end_mode = "boundary"  # saves after every every_steps-th step: the chunks end there

    def next_step_boundary(self, step: int) -> int | None:
        return None if self.every_steps is None else (step // self.every_steps + 1) * self.every_steps

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

    batch_end_mode = "boundary"  # a signal is acted on at the next chunk end (chunks are short)

    def on_batch_end(self, batch, logs=None):
        if self.signum is not None:
            path = self.checkpointer.save_now(batch, logs)
            raise TrainingInterrupted(self.signum, self.run_path, self.epoch, batch, path or self.checkpointer.writer.last_saved)

    def on_epoch_end(self, epoch, logs=None):
        if self.signum is not None:  # the checkpointer (before this) saved the epoch
            raise TrainingInterrupted(self.signum, self.run_path, epoch, -1, self.checkpointer.writer.last_saved)


def checkpoint_saver(writer: CheckpointWriter, run_dir) -> Callable[[str, int], Callable[[str, dict], Any]]:
    """RunContext.checkpoint_saver: savers of full checkpoints into a directory of the run
    (a model_checkpoint callback's), each keeping its own last `keep_last`."""
    from trainctl.runs.rundir import RunDir

    def saver_for(directory: str, keep_last: int) -> Callable[[str, dict], Any]:
        store = RunDir(run_dir.path, checkpoints_dir=directory)

        def save(tag: str, logs: dict[str, Any]) -> Path | None:
            if "batch" in logs:
                return writer.save(tag, int(logs["epoch"]), int(logs["batch"]) + 1, keep_last, store=store)
            return writer.save(tag, int(logs["epoch"]) + 1, 0, keep_last, store=store)

        return save

    return saver_for


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
