"""Learning-rate schedules as callbacks: exponential, cosine and step decay, linear warmup."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from trainctl.config.base import NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt, StrictModel
from trainctl.nn.schedules import Warmup, cosine_decay, exponential_decay, linear_warmup, step_decay
from trainctl.train.callbacks.base import Callback, configured_rate, register


# -- learning-rate schedules --------------------------------------------------------------
class _Schedule(Callback):
    """Sets `model.optimizer.learning_rate` before every batch from the global step (the
    optimizer's `iterations`: exact across resume). `initial_learning_rate` defaults to the
    optimizer's configured rate. Puts the last batch's rate into the epoch logs as `lr`.

    Use one schedule per run (the last one in the list wins each batch); to warm up and
    then decay, give the decay schedule `warmup_steps`.
    """

    def setup(self) -> None:
        self.warmup = Warmup(int(self.warmup_steps), float(self.warmup_initial_learning_rate))
        self.epoch = 0

    def base_rate(self) -> float:
        if self.initial_learning_rate is not None:
            return float(self.initial_learning_rate)
        return configured_rate(self.model.optimizer)

    def decay(self, step: int, epoch: int, base: float) -> float:
        raise NotImplementedError

    def rate(self, step: int, epoch: int = 0) -> float:
        """The learning rate for global step `step` (0-based) in epoch `epoch`."""
        base = self.base_rate()
        if self.warmup.active(step):
            return self.warmup.rate(step, base)
        return self.decay(step - self.warmup.steps, epoch, base)

    def on_train_begin(self, logs=None):
        self._base = self.base_rate()

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_batch_begin(self, batch, logs=None):
        optimizer = self.model.optimizer
        optimizer.learning_rate = self.rate(int(optimizer.iterations), self.epoch)

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["lr"] = float(self.model.optimizer.learning_rate)


class _DecayParams(StrictModel):
    initial_learning_rate: PositiveFloat | None = None  # default: the optimizer's learning_rate
    warmup_steps: NonNegativeInt = 0  # linear warmup before the decay starts
    warmup_initial_learning_rate: NonNegativeFloat = 0.0  # the rate at step 0 of the warmup


@register("exponential_decay")
class ExponentialDecay(_Schedule):
    """tf.keras ExponentialDecay: lr = initial * decay_rate ** (step / decay_steps)."""

    class Params(_DecayParams):
        decay_steps: PositiveInt
        decay_rate: PositiveFloat
        staircase: bool = False  # floor the exponent: decay in discrete jumps

    def decay(self, step, epoch, base):
        return exponential_decay(step, base, self.decay_steps, self.decay_rate, self.staircase)


@register("cosine_decay")
class CosineDecay(_Schedule):
    """tf.keras CosineDecay: from initial down to initial * alpha over decay_steps, then flat."""

    class Params(_DecayParams):
        decay_steps: PositiveInt
        alpha: Annotated[float, Field(ge=0, le=1)] = 0.0  # final rate / initial

    def decay(self, step, epoch, base):
        return cosine_decay(step, base, self.decay_steps, self.alpha)


@register("step_decay")
class StepDecay(_Schedule):
    """lr = initial * factor ** floor(n / step_size), n counting epochs or steps (`unit`).
    With warmup, the step count of the decay starts after the warmup."""

    class Params(_DecayParams):
        step_size: PositiveInt  # epochs (or steps) between drops
        factor: PositiveFloat = 0.5  # the multiplier at each drop
        unit: Literal["epochs", "steps"] = "epochs"

    def decay(self, step, epoch, base):
        return step_decay(step if self.unit == "steps" else epoch, base, self.factor, self.step_size)


@register("linear_warmup")
class LinearWarmup(Callback):
    """Rise linearly from `initial_learning_rate` (at step 0) to `target_learning_rate` (at
    step `warmup_steps`), then hand over: the rate is set to the target once and left alone
    (reduce_lr_on_plateau may act on it). For warmup followed by a decay, give the decay
    schedule `warmup_steps` instead."""

    class Params(StrictModel):
        warmup_steps: PositiveInt
        initial_learning_rate: NonNegativeFloat = 0.0  # the rate at step 0
        target_learning_rate: PositiveFloat | None = None  # default: the optimizer's learning_rate

    def target(self) -> float:
        if self.target_learning_rate is not None:
            return float(self.target_learning_rate)
        return configured_rate(self.model.optimizer)

    def on_train_begin(self, logs=None):
        self._target = self.target()

    def on_batch_begin(self, batch, logs=None):
        optimizer = self.model.optimizer
        step = int(optimizer.iterations)
        if step <= self.warmup_steps:
            optimizer.learning_rate = linear_warmup(step, self.warmup_steps, self.initial_learning_rate,
                                                    self._target)

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["lr"] = float(self.model.optimizer.learning_rate)








