"""The experiment file's schema: a base config, the values to vary, the seeds, the metric.

    name: lr-sweep                      # optional; default: the file's stem
    base: ../quickstart.yaml            # a config file (relative to this file) or a mapping
    grid:                               # every combination of these values ...
      optimizer.learning_rate: [0.001, 0.003]
    random:                             # ... times `count` random draws of these ...
      count: 4
      seed: 0
      params:
        model.layers.0.units: {int: [16, 64]}
        optimizer.beta_1: {uniform: [0.85, 0.95]}
    seeds: [0, 1, 2]                    # ... each run once per seed (the config's `seed`)
    # or, instead of grid/random/seeds, an adaptive search:
    # search: {sampler: tpe, n_trials: 30, pruner: median, seed: 0,
    #          params: {optimizer.learning_rate: {loguniform: [1e-4, 1e-1]}}}
    metric: val_loss                    # the history column to rank by
    mode: min                           # min or max: which end is best

Parsing is strict like a config: unknown keys are errors with a "did you mean".
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal, Union

from pydantic import AfterValidator, Field, model_validator

from trainctl.config.base import NonNegativeInt, PositiveInt, StrictModel

__all__ = ["DISTRIBUTIONS", "ExperimentSpec", "RandomSpec", "SearchSpec", "Distribution"]

DISTRIBUTIONS = ("uniform", "loguniform", "choice", "int")


def _dotted_key(key: str) -> str:
    parts = key.split(".")
    if not key or any(not part.strip() for part in parts):
        raise ValueError(f"{key!r} is not a dotted config path like optimizer.learning_rate")
    return key


DottedKey = Annotated[str, AfterValidator(_dotted_key)]


def _finite_pair(pair: list[float]) -> list[float]:
    low, high = pair
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError("bounds must be finite numbers")
    if low > high:
        raise ValueError(f"the lower bound {low} is above the upper bound {high}")
    return pair


Bounds = Annotated[list[float], Field(min_length=2, max_length=2), AfterValidator(_finite_pair)]


class Distribution(StrictModel):
    """Exactly one of: uniform [a, b], loguniform [a, b] (a > 0), choice [...], int [lo, hi]
    (both ends included)."""

    uniform: Bounds | None = None
    loguniform: Bounds | None = None
    choice: Annotated[list[Any], Field(min_length=1)] | None = None
    int_: Annotated[list[int], Field(min_length=2, max_length=2)] | None = Field(None, alias="int")

    @model_validator(mode="after")
    def _exactly_one(self) -> "Distribution":
        given = [name for name in DISTRIBUTIONS if self.value_of(name) is not None]
        if len(given) != 1:
            shown = ", ".join(given) if given else "none"
            raise ValueError(f"give exactly one distribution of {', '.join(DISTRIBUTIONS)} "
                             f"(got {shown})")
        if self.loguniform is not None and self.loguniform[0] <= 0:
            raise ValueError(f"loguniform bounds must be > 0, got {self.loguniform[0]}")
        if self.int_ is not None and self.int_[0] > self.int_[1]:
            raise ValueError(f"int range [{self.int_[0]}, {self.int_[1]}] is empty")
        return self

    def value_of(self, name: str) -> Any:
        return self.int_ if name == "int" else getattr(self, name)

    @property
    def kind(self) -> str:
        return next(name for name in DISTRIBUTIONS if self.value_of(name) is not None)

    def sample(self, rng) -> Any:
        """One draw, as a plain Python value (floats stay floats, ints ints)."""
        kind = self.kind
        if kind == "uniform":
            low, high = self.uniform
            return float(rng.uniform(low, high))
        if kind == "loguniform":
            low, high = self.loguniform
            return float(math.exp(rng.uniform(math.log(low), math.log(high))))
        if kind == "int":
            low, high = self.int_
            return int(rng.integers(low, high, endpoint=True))
        return self.choice[int(rng.integers(0, len(self.choice)))]


class RandomSpec(StrictModel):
    count: PositiveInt  # draws; each is combined with every grid point
    seed: NonNegativeInt = 0  # the draws are reproducible, independent of the runs' seeds
    params: Annotated[dict[DottedKey, Distribution], Field(min_length=1)]


SAMPLERS = ("tpe", "random", "grid", "cmaes", "qmc")
PRUNERS = ("median", "successive_halving", "hyperband", "none")


class SearchSpec(StrictModel):
    """An adaptive search (Optuna): the sampler picks each trial's values from `params`
    given the trials so far; the pruner stops a trial whose per-epoch metric falls behind."""

    sampler: Literal[SAMPLERS] = "tpe"  # type: ignore[valid-type]  # Optuna's default
    n_trials: PositiveInt  # finished + pruned trials of the whole study (a rerun continues it)
    timeout: Annotated[float, Field(gt=0)] | None = None  # seconds; no new trial starts after it
    pruner: Literal[PRUNERS] = "none"  # type: ignore[valid-type]
    seed: NonNegativeInt = 0  # the sampler's seed: the same study proposes the same trials
    storage: str | None = None  # an Optuna RDB URL; default: a journal file in the experiment dir
    params: Annotated[dict[DottedKey, Distribution], Field(min_length=1)]


class ExperimentSpec(StrictModel):
    name: str | None = None  # default: the experiment file's stem
    base: Union[str, dict[str, Any]]  # a config path relative to this file, or an inline config
    grid: dict[DottedKey, Annotated[list[Any], Field(min_length=1)]] = Field(default_factory=dict)
    random: RandomSpec | None = None
    search: SearchSpec | None = None  # instead of grid/random: Optuna picks the trials
    seeds: Annotated[list[NonNegativeInt], Field(min_length=1)] | None = None  # None: the base's seed
    metric: Annotated[str, Field(min_length=1)] = "val_loss"  # a history column
    mode: Literal["min", "max"] | None = None  # None: from the metric, as monitors decide (val_accuracy: max)
