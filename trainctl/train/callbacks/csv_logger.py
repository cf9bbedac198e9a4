"""CSVLogger: one row per epoch in a CSV file inside the run directory."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field

from trainctl.config.base import StrictModel
from trainctl.train.callbacks.base import Callback, RunContext, register


# -- CSV log ----------------------------------------------------------------------------
@register("csv_logger")
class CSVLogger(Callback):
    """One row per epoch (Keras CSVLogger): `epoch` (0-based, as Keras) then the log keys
    sorted, `NA` for a key an epoch lacks. A relative `filename` is taken relative to
    `base_dir` when the run code sets it (the run directory), else the working directory."""

    class Params(StrictModel):
        filename: str
        separator: Annotated[str, Field(min_length=1, max_length=1)] = ","
        append: bool = False  # add to an existing file instead of overwriting it

    def setup(self) -> None:
        self.base_dir: Path | None = None
        self.keys: list[str] | None = None
        self._file: Any = None
        self._writer: Any = None

    def files(self) -> list[str]:
        return [self.filename]

    def bind_run(self, context: RunContext) -> None:
        """In a run directory the file goes there; a resume keeps the rows of finished epochs."""
        self.base_dir = context.path
        if context.resumed_epoch is not None:
            from trainctl.train.resume import trim_history

            trim_history(self.path, context.resumed_epoch, 0, self.separator)
            self.append = True

    @property
    def path(self) -> Path:
        path = Path(self.filename)
        return path if path.is_absolute() or self.base_dir is None else Path(self.base_dir) / path

    def on_train_begin(self, logs=None):
        from trainctl.errors import TrainctlError

        path = self.path
        self._write_header = True
        try:
            if self.append and path.exists():
                with open(path, encoding="utf-8") as existing:
                    self._write_header = not existing.readline()
            self._file = open(path, "a" if self.append else "w", encoding="utf-8", newline="")
        except OSError as error:
            raise TrainctlError(f"callbacks.csv_logger: cannot open {path}: {error.strerror or error}") from None
        self.keys, self._writer = None, None

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.keys is None:
            self.keys = sorted(logs)
            if self.params.get("do_validation") and not any(k.startswith("val_") for k in self.keys):
                # validation_freq > 1: the first epoch has no val_ keys, later ones do
                self.keys += [f"val_{k}" for k in self.keys]
        if self._writer is None:
            self._writer = csv.writer(self._file, delimiter=self.separator, lineterminator="\n")
            if self._write_header:
                self._writer.writerow(["epoch", *self.keys])
        self._writer.writerow([epoch, *(logs.get(key, "NA") for key in self.keys)])
        self._file.flush()

    def on_train_end(self, logs=None):
        if self._file is not None:
            self._file.close()
        self._file, self._writer = None, None


