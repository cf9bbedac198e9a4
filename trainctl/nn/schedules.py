"""Learning-rate schedules: pure functions of the global step (and, for epoch-based step
decay, the epoch), with the formulas of tf.keras.optimizers.schedules.

`step` is the number of optimizer updates already done (the optimizer's `iterations`),
so step 0 is the first batch, as in Keras where the schedule is called with `iterations`
before the update. A schedule with `warmup_steps > 0` rises linearly from
`warmup_initial_learning_rate` to `initial_learning_rate` over the first `warmup_steps`
steps (Keras CosineDecay's warmup), then decays as if its step count started there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


def linear_warmup(step: int, warmup_steps: int, start: float, target: float) -> float:
    """start at step 0, target at step warmup_steps (and after)."""
    if warmup_steps <= 0 or step >= warmup_steps:
        return float(target)
    return float(start + (target - start) * (step / warmup_steps))


@dataclass(frozen=True)
class Warmup:
    steps: int = 0
    initial_learning_rate: float = 0.0  # the rate at step 0 of the warmup

    def active(self, step: int) -> bool:
        return step < self.steps

    def rate(self, step: int, target: float) -> float:
        return linear_warmup(step, self.steps, self.initial_learning_rate, target)


def exponential_decay(step: int, initial_learning_rate: float, decay_steps: int, decay_rate: float,
                      staircase: bool = False) -> float:
    """Keras ExponentialDecay: initial * decay_rate ** (step / decay_steps), floored exponent
    when `staircase`."""
    exponent = step / decay_steps
    if staircase:
        exponent = math.floor(exponent)
    return float(initial_learning_rate * decay_rate ** exponent)


def cosine_decay(step: int, initial_learning_rate: float, decay_steps: int, alpha: float = 0.0) -> float:
    """Keras CosineDecay: initial * ((1 - alpha) * 0.5 * (1 + cos(pi * min(step, decay_steps) /
    decay_steps)) + alpha); stays at initial * alpha after decay_steps."""
    fraction = min(step, decay_steps) / decay_steps
    cosine = 0.5 * (1.0 + math.cos(math.pi * fraction))
    return float(initial_learning_rate * ((1.0 - alpha) * cosine + alpha))


def step_decay(count: int, initial_learning_rate: float, factor: float, step_size: int) -> float:
    """initial * factor ** floor(count / step_size); `count` is steps or epochs."""
    return float(initial_learning_rate * factor ** (count // step_size))
