"""TerminateOnNaN: stops training at the first non-finite batch loss."""

from __future__ import annotations

from trainctl.config.base import StrictModel
from trainctl.train.callbacks.base import Callback, register
from trainctl.train.callbacks.monitor import _finite


# -- stop on a non-finite loss -------------------------------------------------------
@register("terminate_on_nan", "TerminateOnNaN")
class TerminateOnNaN(Callback):
    """Stop at the first batch whose loss is NaN or infinite (Keras TerminateOnNaN).
    `stopped_at` is (epoch, batch), both 0-based; `message` says it in the display's 1-based
    numbering."""

    class Params(StrictModel):
        pass

    def setup(self) -> None:
        self.stopped_at: tuple[int, int] | None = None
        self.message: str | None = None
        self.epoch = 0

    def on_train_begin(self, logs=None):
        self.stopped_at, self.message = None, None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is None or _finite(loss) or self.stopped_at is not None:
            return
        self.stopped_at = (self.epoch, batch)
        self.message = (f"training stopped: the loss became {float(loss)} at epoch {self.epoch + 1}, "
                        f"batch {batch + 1}; try a smaller learning rate")
        self.model.stop_training = True

    @property
    def failure(self) -> str | None:
        """A run that stopped on a non-finite loss failed."""
        return self.message


