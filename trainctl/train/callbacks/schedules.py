"""Learning-rate schedules as callbacks: exponential, cosine and step decay, linear warmup."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from trainctl.config.base import NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt, StrictModel
from trainctl.nn.schedules import Warmup, cosine_decay, exponential_decay, linear_warmup, step_decay
from trainctl.train.callbacks.base import CALLBACKS, Callback


# -- learning-rate schedules --------------------------------------------------------------
class _Schedule(Callback):
    """Sets `model.optimizer.learning_rate` before every batch from the global step (the
    optimizer's `iterations`: exact across resume). `initial_learning_rate` defaults to the
    optimizer's configured rate. Puts the last batch's rate into the epoch logs as `lr`.

    Use one schedule per run (the last one in the list wins each batch); to warm up and
    then decay, give the decay schedule `warmup_steps`.
    """

    def __init__(self, initial_learning_rate: float | None = None, warmup_steps: int = 0,
                 warmup_initial_learning_rate: float = 0.0):
        super().__init__()
        self.initial_learning_rate = initial_learning_rate
        self.warmup = Warmup(int(warmup_steps), float(warmup_initial_learning_rate))
        self.epoch = 0

    def base_rate(self) -> float:
        if self.initial_learning_rate is not None:
            return float(self.initial_learning_rate)
        optimizer = self.model.optimizer
        configured = getattr(getattr(optimizer, "params", None), "learning_rate", None)
        return float(configured if configured is not None else optimizer.learning_rate)

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


class ExponentialDecay(_Schedule):
    """tf.keras ExponentialDecay: lr = initial * decay_rate ** (step / decay_steps)."""

    class Params(_DecayParams):
        decay_steps: PositiveInt
        decay_rate: PositiveFloat
        staircase: bool = False  # floor the exponent: decay in discrete jumps

    def __init__(self, decay_steps: int, decay_rate: float, staircase: bool = False, **common: Any):
        super().__init__(**common)
        self.decay_steps, self.decay_rate, self.staircase = int(decay_steps), float(decay_rate), staircase

    def decay(self, step, epoch, base):
        return exponential_decay(step, base, self.decay_steps, self.decay_rate, self.staircase)


class CosineDecay(_Schedule):
    """tf.keras CosineDecay: from initial down to initial * alpha over decay_steps, then flat."""

    class Params(_DecayParams):
        decay_steps: PositiveInt
        alpha: Annotated[float, Field(ge=0, le=1)] = 0.0  # final rate / initial

    def __init__(self, decay_steps: int, alpha: float = 0.0, **common: Any):
        super().__init__(**common)
        self.decay_steps, self.alpha = int(decay_steps), float(alpha)

    def decay(self, step, epoch, base):
        return cosine_decay(step, base, self.decay_steps, self.alpha)


class StepDecay(_Schedule):
    """lr = initial * factor ** floor(n / step_size), n counting epochs or steps (`unit`).
    With warmup, the step count of the decay starts after the warmup."""

    class Params(_DecayParams):
        step_size: PositiveInt  # epochs (or steps) between drops
        factor: PositiveFloat = 0.5  # the multiplier at each drop
        unit: Literal["epochs", "steps"] = "epochs"

    def __init__(self, step_size: int, factor: float = 0.5, unit: str = "epochs", **common: Any):
        super().__init__(**common)
        self.step_size, self.factor, self.unit = int(step_size), float(factor), unit

    def decay(self, step, epoch, base):
        return step_decay(step if self.unit == "steps" else epoch, base, self.factor, self.step_size)


class LinearWarmup(Callback):
    """Rise linearly from `initial_learning_rate` (at step 0) to `target_learning_rate` (at
    step `warmup_steps`), then hand over: the rate is set to the target once and left alone
    (reduce_lr_on_plateau may act on it). For warmup followed by a decay, give the decay
    schedule `warmup_steps` instead."""

    class Params(StrictModel):
        warmup_steps: PositiveInt
        initial_learning_rate: NonNegativeFloat = 0.0  # the rate at step 0
        target_learning_rate: PositiveFloat | None = None  # default: the optimizer's learning_rate

    def __init__(self, warmup_steps: int, initial_learning_rate: float = 0.0,
                 target_learning_rate: float | None = None):
        super().__init__()
        self.warmup_steps = int(warmup_steps)
        self.initial_learning_rate = float(initial_learning_rate)
        self.target_learning_rate = target_learning_rate

    def target(self) -> float:
        if self.target_learning_rate is not None:
            return float(self.target_learning_rate)
        optimizer = self.model.optimizer
        configured = getattr(getattr(optimizer, "params", None), "learning_rate", None)
        return float(configured if configured is not None else optimizer.learning_rate)

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


CALLBACKS.register("exponential_decay")(ExponentialDecay)


CALLBACKS.register("cosine_decay")(CosineDecay)


CALLBACKS.register("step_decay")(StepDecay)


CALLBACKS.register("linear_warmup")(LinearWarmup)
