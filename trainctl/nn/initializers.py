"""Weight initializers, as tfjs-layers/src/initializers.ts defines them.

`build_initializer("glorot_uniform")` or `build_initializer({"type": "random_normal",
"stddev": 0.1})` gives an `Initializer`; calling it with `(shape, rng, dtype)` returns a new
array of that shape. Randomness comes only from the `rng` passed in (see trainctl.seeding).

Where TF.js and Keras differ, TF.js wins, with two exceptions noted where they occur:
- `distribution: normal` draws a normal truncated at 2 stddev with stddev sqrt(scale), as
  TF.js does (no 0.8796 correction: the resulting std is about 0.88 * sqrt(scale)).
  `distribution: truncated_normal`, which TF.js accepts but silently treats as uniform,
  follows Keras: stddev sqrt(scale) / 0.87962566103423978 so the variance is exactly scale.
- TF.js reads `minval || -0.05`, so an explicit 0 turns into the default; here 0 means 0.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Literal

import numpy as np
from pydantic import BeforeValidator, model_validator

from trainctl.config.base import Configured, FiniteFloat, NonNegativeFloat, PositiveFloat, Seed, StrictModel, resolve_spec
from trainctl.errors import TrainctlError
from trainctl.registry import Registry, snake_case
from trainctl.seeding import rng_for

Shape = tuple[int, ...]

# Standard deviation of a unit normal truncated to (-2, 2): scipy.stats.truncnorm.std(-2, 2).
TRUNCATED_NORMAL_STD = 0.87962566103423978


def _snake_value(value: Any) -> Any:
    """TF.js spells enum values in camelCase (fanIn, truncatedNormal); accept both."""
    return snake_case(value) if isinstance(value, str) else value


def compute_fans(shape: Shape) -> tuple[float, float]:
    """(fan_in, fan_out) as TF.js computeFans with channels-last kernels.

    2-D [in, out] → (in, out); 3- to 5-D conv kernels [*receptive, in, out] → (in * r, out * r)
    with r the product of the receptive field; any other rank → sqrt(size) for both.
    """
    shape = tuple(int(d) for d in shape)
    if len(shape) == 2:
        return float(shape[0]), float(shape[1])
    if len(shape) in (3, 4, 5):
        receptive = math.prod(shape[:-2])
        return float(shape[-2] * receptive), float(shape[-1] * receptive)
    root = math.sqrt(math.prod(shape))
    return root, root


def _truncated_standard_normal(shape: Shape, rng: np.random.Generator) -> np.ndarray:
    """Unit normals with every draw beyond 2 stddev redrawn (tf.truncatedNormal's rule)."""
    z = rng.standard_normal(shape)
    out = np.abs(z) > 2.0
    while out.any():
        z[out] = rng.standard_normal(int(out.sum()))
        out = np.abs(z) > 2.0
    return z


class Initializer(Configured):
    """`__call__(shape, rng, dtype) -> ndarray` of that shape and dtype."""

    class_name: ClassVar[str]  # TF.js class name

    def __call__(self, shape: Shape, rng: np.random.Generator, dtype: Any = np.float32) -> np.ndarray:
        shape = tuple(int(d) for d in shape)
        seed = getattr(self.params, "seed", None)
        if seed is not None:  # TF.js `seed`: the same seed gives the same values
            rng = rng_for(seed, "initializer", self.type_id)
        return np.asarray(self.sample(shape, rng), dtype=dtype)

    def sample(self, shape: Shape, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError


INITIALIZERS: Registry[type[Initializer]] = Registry("initializer")
_register = INITIALIZERS.register_type


class SeedParams(StrictModel):
    seed: Seed | None = None  # TF.js option; default: the model's seed stream for this weight


@_register("zeros")
class Zeros(Initializer):
    class_name = "Zeros"

    def sample(self, shape, rng):
        return np.zeros(shape)


@_register("ones")
class Ones(Initializer):
    class_name = "Ones"

    def sample(self, shape, rng):
        return np.ones(shape)


@_register("constant")
class Constant(Initializer):
    class_name = "Constant"

    class Params(StrictModel):
        value: FiniteFloat  # TF.js requires it: "config must have value set"

    def sample(self, shape, rng):
        return np.full(shape, self.params.value)


@_register("random_normal")
class RandomNormal(Initializer):
    class_name = "RandomNormal"

    class Params(SeedParams):
        mean: FiniteFloat = 0.0
        stddev: NonNegativeFloat = 0.05  # TF.js DEFAULT_STDDEV

    def sample(self, shape, rng):
        return self.params.mean + self.params.stddev * rng.standard_normal(shape)


@_register("random_uniform")
class RandomUniform(Initializer):
    class_name = "RandomUniform"

    class Params(SeedParams):
        minval: FiniteFloat = -0.05  # TF.js DEFAULT_MINVAL
        maxval: FiniteFloat = 0.05  # TF.js DEFAULT_MAXVAL

        @model_validator(mode="after")
        def _ordered(self):
            if self.minval > self.maxval:
                raise ValueError(f"minval ({self.minval}) must not exceed maxval ({self.maxval})")
            return self

    def sample(self, shape, rng):
        return rng.uniform(self.params.minval, self.params.maxval, shape)


@_register("truncated_normal")
class TruncatedNormal(Initializer):
    class_name = "TruncatedNormal"

    class Params(SeedParams):
        mean: FiniteFloat = 0.0
        stddev: NonNegativeFloat = 0.05  # TF.js DEFAULT_STDDEV; draws beyond 2 stddev are redrawn

    def sample(self, shape, rng):
        return self.params.mean + self.params.stddev * _truncated_standard_normal(shape, rng)


FanMode = Annotated[Literal["fan_in", "fan_out", "fan_avg"], BeforeValidator(_snake_value)]
Distribution = Annotated[Literal["normal", "uniform", "truncated_normal"], BeforeValidator(_snake_value)]


@_register("variance_scaling")
class VarianceScaling(Initializer):
    """Draws with variance scale / n, n = fan_in, fan_out or their mean (at least 1)."""

    class_name = "VarianceScaling"

    class Params(SeedParams):
        scale: PositiveFloat = 1.0  # TF.js default
        mode: FanMode = "fan_in"  # TF.js default; fanIn / fanOut / fanAvg accepted
        distribution: Distribution = "normal"  # TF.js default (a 2-stddev truncated normal)

    def settings(self) -> tuple[float, str, str]:
        return self.params.scale, self.params.mode, self.params.distribution

    def sample(self, shape, rng):
        scale, mode, distribution = self.settings()
        fan_in, fan_out = compute_fans(shape)
        n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[mode]
        scale = scale / max(1.0, n)
        if distribution == "uniform":
            limit = math.sqrt(3.0 * scale)
            return rng.uniform(-limit, limit, shape)
        stddev = math.sqrt(scale)
        if distribution == "truncated_normal":  # Keras: correct for the truncation
            stddev /= TRUNCATED_NORMAL_STD
        return stddev * _truncated_standard_normal(shape, rng)


def _preset(type_id: str, class_name: str, scale: float, mode: str, distribution: str, *aliases: str):
    """A fixed VarianceScaling, as TF.js GlorotUniform & co. (their only option is `seed`)."""

    class Preset(VarianceScaling):
        Params = SeedParams

        def settings(self) -> tuple[float, str, str]:
            return scale, mode, distribution

    Preset.__name__ = Preset.__qualname__ = class_name
    Preset.class_name = class_name
    Preset.__doc__ = f"VarianceScaling(scale={scale}, mode={mode}, distribution={distribution})."
    return _register(type_id, *aliases)(Preset)


GlorotUniform = _preset("glorot_uniform", "GlorotUniform", 1.0, "fan_avg", "uniform")
GlorotNormal = _preset("glorot_normal", "GlorotNormal", 1.0, "fan_avg", "normal")
HeUniform = _preset("he_uniform", "HeUniform", 2.0, "fan_in", "uniform")
HeNormal = _preset("he_normal", "HeNormal", 2.0, "fan_in", "normal")
LeCunUniform = _preset("lecun_uniform", "LeCunUniform", 1.0, "fan_in", "uniform", "leCunUniform")
LeCunNormal = _preset("lecun_normal", "LeCunNormal", 1.0, "fan_in", "normal", "leCunNormal")


@_register("orthogonal")
class Orthogonal(Initializer):
    """gain * a matrix with orthonormal rows or columns (whichever there are fewer of).

    As TF.js: Gram-Schmidt of a normal [min, max] matrix, transposed back when rows > cols.
    Gram-Schmidt is QR with R's diagonal made positive. N-D shapes are flattened to
    [prod(shape[:-1]), shape[-1]] as Keras does (TF.js supports 2-D only).
    """

    class_name = "Orthogonal"

    class Params(SeedParams):
        gain: FiniteFloat = 1.0  # TF.js DEFAULT_GAIN

    def sample(self, shape, rng):
        if len(shape) < 2:
            raise TrainctlError(f"orthogonal initializer needs a shape of at least 2 axes, got {list(shape)}")
        rows, cols = math.prod(shape[:-1]), shape[-1]
        a = rng.standard_normal((min(rows, cols), max(rows, cols)))
        q, r = np.linalg.qr(a.T)  # columns of q: Gram-Schmidt of the rows of a
        q = q * np.where(np.diag(r) < 0, -1.0, 1.0)
        q = q.T  # [min, max], orthonormal rows
        if rows > cols:
            q = q.T
        return (self.params.gain * q).reshape(shape)


@_register("identity")
class Identity(Initializer):
    class_name = "Identity"

    class Params(StrictModel):
        gain: FiniteFloat = 1.0  # TF.js default

    def sample(self, shape, rng):
        if len(shape) != 2 or shape[0] != shape[1]:
            raise TrainctlError(
                f"identity initializer can only be used for 2-D square matrices, got shape {list(shape)}"
            )
        return self.params.gain * np.eye(shape[0])


def build_initializer(spec: str | Mapping[str, Any] | Initializer) -> Initializer:
    """`"he_normal"`, `{"type": "random_normal", "stddev": 0.1}` (or an Initializer) → Initializer."""
    if isinstance(spec, Initializer):
        return spec
    cls, params = resolve_spec(INITIALIZERS, spec)
    return cls(params)
