"""The options of every generator (`data.train: {generator: <id>, ...}`), one model per id.

The functions that draw the data are in `generators.py`, registered under the same ids."""

from __future__ import annotations

import math
from typing import Annotated, ClassVar, Literal, Union

from pydantic import Field, Strict, model_validator

from trainctl.config.base import (
    MAX_COUNT,
    FiniteFloat,
    NonNegativeFloat,
    PositiveFloat,
    PositiveInt,
    StrictModel,
    bounded_int,
)
from trainctl.data.params import LabelMode, Shape, _id

# ---------------------------------------------------------------- generators


class _Generator(StrictModel):
    forecasts: ClassVar[bool] = False  # windows of a series: train prints the last-value baseline
    n_samples: PositiveInt = 1000  # enough points to see the shape of a toy problem
    labels: LabelMode = "auto"


class RandomNormalGenerator(_Generator):
    """x ~ N(mean, stddev) of `shape`; y of `target_shape` drawn separately (tf.randomNormal)."""

    generator: _id("random_normal")
    shape: Shape = [1]
    target_shape: Shape = [1]
    mean: FiniteFloat = 0.0
    stddev: PositiveFloat = 1.0


class RandomUniformGenerator(_Generator):
    """x ~ U[minval, maxval) of `shape`; y of `target_shape` drawn separately (tf.randomUniform)."""

    generator: _id("random_uniform")
    shape: Shape = [1]
    target_shape: Shape = [1]
    minval: FiniteFloat = 0.0  # TF.js defaults
    maxval: FiniteFloat = 1.0

    @model_validator(mode="after")
    def _range(self) -> "RandomUniformGenerator":
        if not self.maxval > self.minval:
            raise ValueError(f"maxval ({self.maxval}) must be greater than minval ({self.minval})")
        return self


class LinearGenerator(_Generator):
    """y = x·true_w + true_b + N(0, noise). A scalar true_w gives the "basic training loops"
    data: n_samples points evenly spaced on [x_min, x_max]; a list draws x uniformly."""

    generator: _id("linear")
    n_samples: PositiveInt = 201  # the TF guide's tf.linspace(-2, 2, 201)
    x_min: FiniteFloat = -2.0
    x_max: FiniteFloat = 2.0
    true_w: Union[FiniteFloat, list[FiniteFloat]] = 3.0
    true_b: FiniteFloat = 2.0
    noise: NonNegativeFloat = 1.0  # stddev of the Gaussian noise added to y


class PolynomialGenerator(_Generator):
    """y = Σ coefficients[i]·x^i + N(0, noise), x uniform on [x_min, x_max]."""

    generator: _id("polynomial")
    coefficients: list[FiniteFloat] = [0.0, 1.0, -0.5, 0.25]  # lowest power first
    x_min: FiniteFloat = -2.0
    x_max: FiniteFloat = 2.0
    noise: NonNegativeFloat = 0.1


class SineGenerator(_Generator):
    """y = amplitude·sin(frequency·x + phase) + N(0, noise), x uniform on [x_min, x_max]."""

    generator: _id("sine")
    x_min: FiniteFloat = -math.pi
    x_max: FiniteFloat = math.pi
    amplitude: FiniteFloat = 1.0
    frequency: FiniteFloat = 1.0
    phase: FiniteFloat = 0.0
    noise: NonNegativeFloat = 0.05


class BlobsGenerator(_Generator):
    """Gaussian clusters, one per class, centres uniform in center_box (sklearn make_blobs)."""

    generator: _id("blobs")
    n_features: PositiveInt = 2
    n_classes: bounded_int(ge=2) = 3
    cluster_std: PositiveFloat = 1.0
    center_box: tuple[FiniteFloat, FiniteFloat] = (-10.0, 10.0)


class MoonsGenerator(_Generator):
    """Two interleaving half circles, 2 classes (sklearn make_moons)."""

    generator: _id("moons")
    noise: NonNegativeFloat = 0.1


class CirclesGenerator(_Generator):
    """A small circle inside a large one, 2 classes (sklearn make_circles)."""

    generator: _id("circles")
    noise: NonNegativeFloat = 0.05
    factor: Annotated[float, Field(gt=0, lt=1)] = 0.5  # inner radius / outer radius


class SpiralsGenerator(_Generator):
    """n_classes interleaved arms of an Archimedean spiral (the cs231n / playground spiral)."""

    generator: _id("spirals")
    n_classes: bounded_int(ge=2) = 2
    turns: PositiveFloat = 1.0
    noise: NonNegativeFloat = 0.1


class XorGenerator(_Generator):
    """x uniform on [-1, 1]², label 1 where the two coordinates differ in sign."""

    generator: _id("xor")
    noise: NonNegativeFloat = 0.0  # Gaussian jitter added to x after labelling


class TeacherGenerator(_Generator):
    """x ~ N(0, 1); labels are the argmax of a fixed random tanh network, so a task of any
    width (784 features, 10 classes) is learnable. The teacher depends only on the seed,
    so train and validation share it."""

    generator: _id("teacher")
    n_features: PositiveInt = 784
    n_classes: bounded_int(ge=2) = 10
    hidden: PositiveInt = 32


class TokenSequencesGenerator(_Generator):
    """Sequences of integer tokens in [1, vocab_size) (0 is padding) of `length` steps, or of
    a random length in [min_length, length] padded with 0 at the end. The class is a hidden
    rule: each token carries a fixed random score per class and the class with the largest
    total over the sequence wins, so a bag of learned token embeddings can find it
    (embedding → global_average_pooling1d → dense). The scores depend only on the seed."""

    generator: _id("token_sequences")
    vocab_size: Annotated[int, Strict(), Field(ge=2, le=MAX_COUNT)] = 100  # token ids 0..vocab_size-1 (embedding input_dim)
    length: PositiveInt = 20
    min_length: PositiveInt | None = None  # None: every sequence has `length` tokens
    n_classes: Annotated[int, Strict(), Field(ge=2, le=MAX_COUNT)] = 2

    @model_validator(mode="after")
    def _lengths(self) -> "TokenSequencesGenerator":
        if self.min_length is not None and self.min_length > self.length:
            raise ValueError(f"min_length ({self.min_length}) must not exceed length ({self.length})")
        return self


class TimeSeriesGenerator(_Generator):
    """Forecasting windows cut from one long seeded series: x [n, window, 1] holds `window`
    consecutive values, y [n, horizon] the `horizon` values after them. `kind: sine` is a sum
    of two sines with random phases plus N(0, noise); `kind: arma` an ARMA(2,1) process
    x_t = 1.3 x_{t-1} - 0.6 x_{t-2} + e_t + 0.4 e_{t-1}, e ~ N(0, noise)."""

    forecasts: ClassVar[bool] = True
    generator: _id("time_series")
    kind: Literal["sine", "arma"] = "sine"
    window: PositiveInt = 24  # steps the model sees
    horizon: PositiveInt = 1  # steps it predicts
    period: Annotated[float, Field(gt=1)] = 20.0  # of the first sine, in steps (the second: period / 2.7)
    noise: NonNegativeFloat = 0.05


class AddingProblemGenerator(_Generator):
    """The adding problem (Hochreiter & Schmidhuber 1997): x [n, length, 2], channel 0 uniform
    on [0, 1], channel 1 marks exactly two steps with 1; y [n, 1] is the sum of the two marked
    values. Predicting the mean (1.0) scores MSE ~0.167; a recurrent model gets near 0."""

    generator: _id("adding_problem")
    length: bounded_int(ge=2) = 30


# every generator's options model; generators.py registers each with its function under the same id
GENERATOR_MODELS: tuple[type[_Generator], ...] = (
    RandomNormalGenerator, RandomUniformGenerator, LinearGenerator, PolynomialGenerator, SineGenerator, BlobsGenerator,
    MoonsGenerator, CirclesGenerator, SpiralsGenerator, XorGenerator, TeacherGenerator, TokenSequencesGenerator,
    TimeSeriesGenerator, AddingProblemGenerator,
)
GeneratorConfig = Union[GENERATOR_MODELS]  # type: ignore[valid-type]
