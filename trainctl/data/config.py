"""The `data:` section of the config: where the samples come from and what is done to them.

```yaml
data:
  train: {generator: teacher, n_samples: 60000, n_features: 784, n_classes: 10}
  # or {csv: data/iris.csv, target: species, labels: one_hot}
  # or {npy: x.npy, targets: y.npy}  /  {npz: file.npz, x_key: x, y_key: y}
  # or {shards: dir/, target: -1}    /  {zip: {x: SOURCE, y: SOURCE}}
  # or {stream: {source: SOURCE, shuffle: {buffer_size: 10000}, drop_remainder: false}}
  validation: {...same forms...}       # explicit validation data (TF.js validationData)
  validation_split: 0.2                # or hold out the last 20% of train (TF.js validationSplit)
  preprocessing: [{type: standardize}, {type: one_hot}, {type: reshape, target_shape: [8, 8, 1]}]
```

A source's form is chosen by its one key among `generator`, `csv`, `npy`, `npz`, `shards`,
`zip` and `stream`. Paths are relative to the config file's directory unless absolute.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, ClassVar, Literal, Union

from pydantic import BeforeValidator, Field, PlainValidator, field_validator, model_validator, Strict

from trainctl.config.base import (
    _finite,
    MAX_COUNT,
    Seed,
    FiniteFloat,
    NonNegativeFloat,
    PositiveFloat,
    PositiveInt,
    StrictModel,
    UnitInterval,
    bounded_int,
)
from trainctl.registry import did_you_mean, snake_case

# How class labels become targets. auto: one-hot for 3+ classes, a single 0/1 column for
# 2 (binary_crossentropy); when the loss is known it decides (sparse_* → sparse indices).
LabelMode = Literal["auto", "one_hot", "sparse", "binary", "none"]
Column = Union[Annotated[int, Strict()], str]  # a column by header name, or by 0-based index (negative from the end)
Shape = list[PositiveInt]


def _snake(value: Any) -> Any:
    return snake_case(value) if isinstance(value, str) else value


def _id(name: str) -> Any:
    """A Literal id field that also accepts the TF.js camelCase spelling (`randomNormal`)."""
    return Annotated[Literal[name], BeforeValidator(_snake)]  # type: ignore[valid-type]


# ---------------------------------------------------------------- generators


class _Generator(StrictModel):
    n_samples: PositiveInt = 1000  # enough points to see the shape of a toy problem
    labels: LabelMode = "auto"
    forecasts: ClassVar[bool] = False  # windows of a series: train prints the last-value baseline


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


GENERATOR_CONFIGS: dict[str, type[_Generator]] = {
    "random_normal": RandomNormalGenerator,
    "random_uniform": RandomUniformGenerator,
    "linear": LinearGenerator,
    "polynomial": PolynomialGenerator,
    "sine": SineGenerator,
    "blobs": BlobsGenerator,
    "moons": MoonsGenerator,
    "circles": CirclesGenerator,
    "spirals": SpiralsGenerator,
    "xor": XorGenerator,
    "teacher": TeacherGenerator,
    "token_sequences": TokenSequencesGenerator,
    "time_series": TimeSeriesGenerator,
    "adding_problem": AddingProblemGenerator,
}

GeneratorConfig = Union[tuple(GENERATOR_CONFIGS.values())]  # type: ignore[valid-type]


# ---------------------------------------------------------------- files


class _Labelled(StrictModel):
    labels: LabelMode = "auto"
    class_names: list[str] | None = None  # fixes the class order (and is needed to stream string labels)


FillStrategy = Literal["mean", "median", "constant", "most_frequent"]


class ColumnSpec(StrictModel):
    """How one feature column becomes model inputs (fitted on the training split).

    `neighborhood: categorical` is short for `neighborhood: {type: categorical}`."""

    type: Literal["numeric", "categorical"] = "numeric"
    encoding: Literal["one_hot", "index"] = "one_hot"  # categorical: one-hot columns, or one index column for an embedding
    fill: FillStrategy | None = None  # missing cells: None is an error naming the row
    value: Union[FiniteFloat, str, None] = None  # the constant for fill: constant

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        if isinstance(data, str):
            return {"type": data}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> "ColumnSpec":
        if self.fill == "constant" and self.value is None:
            raise ValueError("fill: constant needs a value")
        if self.fill != "constant" and self.value is not None:
            raise ValueError("value is only used with fill: constant")
        if self.type == "categorical" and self.fill in ("mean", "median"):
            raise ValueError(f"fill: {self.fill} needs a numeric column; use most_frequent or constant for a categorical one")
        if self.type == "numeric" and self.fill == "constant" and isinstance(self.value, str):
            raise ValueError("a numeric column's fill value must be a number")
        if self.type == "numeric" and self.encoding != "one_hot":
            raise ValueError("encoding applies to categorical columns")
        return self


class _Table(_Labelled):
    """Column selection shared by CSV files and shard directories."""

    target: Union[Column, list[Column], None] = None  # None: no targets (predict inputs)
    features: list[Column] | None = None  # None: every column that is not a target or weight
    sample_weight: Column | None = None  # a column of per-sample weights
    columns: dict[str, ColumnSpec] = {}  # per-feature treatment by header name: categorical, fill
    fill: FillStrategy | None = None  # default fill for every numeric feature column not in `columns`
    missing_values: list[str] = ["", "NA", "N/A", "null"]  # cells read as missing (a literal nan stays NaN)
    encoding: str = "utf-8"  # the file's text encoding (latin-1, utf-16, ...)

    @field_validator("fill")
    @classmethod
    def _no_constant(cls, value):
        if value in ("constant", "most_frequent"):
            raise ValueError(f"fill: {value} is per column: columns: {{name: {{fill: {value}, ...}}}}")
        return value

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        import codecs

        try:
            codecs.lookup(value)
        except LookupError:
            raise ValueError(f"unknown text encoding {value!r}") from None
        return value


class CsvSource(_Table):
    csv: str
    delimiter: str = ","
    header: bool = True  # first line names the columns

    @field_validator("delimiter")
    @classmethod
    def _one_char(cls, value: str) -> str:
        if len(value) != 1:
            raise ValueError("delimiter must be a single character")
        return value


class NpySource(_Labelled):
    npy: str  # x, any shape [n, ...]; memory-mapped
    targets: str | None = None  # y, [n] class indices or [n, ...] values
    sample_weight: str | None = None  # [n]


class NpzSource(_Labelled):
    npz: str
    x_key: str = "x"
    y_key: str | None = "y"
    sample_weight_key: str | None = None


class ShardsSource(_Table):
    """A directory of .csv files (each with the same header) or of 2-D .npy tables, read in
    name order; columns are chosen as for CSV (names for .csv, indices for .npy)."""

    shards: str
    pattern: str | None = None  # glob inside the directory; default *.csv, else *.npy
    delimiter: str = ","


class ZipSource(_Labelled):
    """x from one source and y from another (each source's x), as tf.data.zip({xs, ys})."""

    zip: "ZipParts"


# ---------------------------------------------------------------- streaming


class ShuffleConfig(StrictModel):
    buffer_size: PositiveInt  # tf.data shuffle(bufferSize): ≥ n_samples is a full shuffle
    reshuffle_each_iteration: bool = True  # a different order every epoch


class StreamConfig(StrictModel):
    """The fitDataset path: source → map (preprocessing) → shuffle → batch → repeat / take.
    The batch size comes from fit.batch_size."""

    source: "FileOrGenerator"
    shuffle: ShuffleConfig | None = None
    drop_remainder: bool = False  # drop a final short batch
    repeat: PositiveInt = 1  # passes over the source per epoch
    take: PositiveInt | None = None  # at most this many batches per epoch
    chunk_rows: PositiveInt = 65536  # rows read from the file at a time

    @model_validator(mode="before")
    @classmethod
    def _shuffle_shorthand(cls, data: Any) -> Any:
        # `shuffle: 10000` means `shuffle: {buffer_size: 10000}`, as tf.data's shuffle(10000)
        if isinstance(data, dict):
            for key in ("shuffle",):
                if isinstance(data.get(key), int) and not isinstance(data.get(key), bool):
                    data = {**data, key: {"buffer_size": data[key]}}
        return data


class StreamSource(StrictModel):
    stream: StreamConfig


# ---------------------------------------------------------------- source forms

_FORMS = ("generator", "csv", "npy", "npz", "shards", "zip", "stream")


def _form_of(value: Any) -> str | None:
    if isinstance(value, dict):
        present = [key for key in _FORMS if key in value]
        return present[0] if len(present) == 1 else None
    for key in _FORMS:
        if key in type(value).model_fields:
            return key
    return None


def _check_form(allowed: tuple[str, ...]):
    def check(value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        present = [key for key in _FORMS if key in value]
        if len(present) > 1:
            raise ValueError(f"give one of {', '.join(allowed)}, not both {present[0]} and {present[1]}")
        if not present:
            hints = [did_you_mean(str(key), list(allowed)) for key in value]
            hint = next((h for h in hints if h), None)
            message = f"a data source needs one of: {', '.join(allowed)}"
            raise ValueError(message + (f"; did you mean {hint!r}?" if hint else ""))
        if present[0] not in allowed:
            raise ValueError(f"{present[0]!r} cannot be used here; expected one of: {', '.join(allowed)}")
        if present[0] == "generator":
            name = value["generator"]
            if not isinstance(name, str) or _snake(name) not in GENERATOR_CONFIGS:
                choices = list(GENERATOR_CONFIGS)
                hint = did_you_mean(str(name), choices)
                raise ValueError(
                    f"unknown generator {name!r}"
                    + (f"; did you mean {hint!r}?" if hint else f"; valid: {', '.join(choices)}")
                )
        return value

    return check


_ARRAY_FORMS = ("generator", "csv", "npy", "npz", "shards", "zip")
_FORM_MODELS: dict[str, type[StrictModel]] = {
    "csv": CsvSource,
    "npy": NpySource,
    "npz": NpzSource,
    "shards": ShardsSource,
    "zip": ZipSource,
    "stream": StreamSource,
}


def _source_validator(allowed: tuple[str, ...]):
    """Dispatch on the form key. Plain dispatch (not a tagged union) keeps error locations
    free of union tags, so `train.target` maps back to its line in the YAML."""
    check = _check_form(allowed)

    def validate(value: Any) -> Any:
        if isinstance(value, StrictModel) and _form_of(value) in allowed:
            return value
        if not isinstance(value, dict):
            raise ValueError(f"a data source is a mapping with one of: {', '.join(allowed)}")
        check(value)
        form = _form_of(value)
        if form == "generator":
            return GENERATOR_CONFIGS[_snake(value["generator"])].model_validate(value)
        return _FORM_MODELS[form].model_validate(value)  # type: ignore[index]

    return validate


_ArrayForms = Union[GeneratorConfig, CsvSource, NpySource, NpzSource, ShardsSource, ZipSource]  # type: ignore[valid-type]
# Declared as Any so the serializer dumps whichever model was validated (a Union of models
# would try each member and warn); the precise types are _ArrayForms / + StreamSource.
# json_schema_input_type: what `trainctl schema` shows editors (validation is the dispatch above).
FileOrGenerator = Annotated[Any, PlainValidator(_source_validator(_ARRAY_FORMS), json_schema_input_type=_ArrayForms)]
SourceConfig = Annotated[Any, PlainValidator(_source_validator(_FORMS),
                                             json_schema_input_type=Union[_ArrayForms, "StreamSource"])]


class ZipParts(StrictModel):
    x: FileOrGenerator
    y: FileOrGenerator


# ---------------------------------------------------------------- preprocessing


class Standardize(StrictModel):
    """x ← (x − mean) / std, per feature, statistics from the training split."""

    type: _id("standardize")
    epsilon: PositiveFloat = 1e-7  # floor on std, so a constant feature does not divide by 0


class MinMax(StrictModel):
    """x ← scaled so each feature spans feature_range on the training split."""

    type: _id("min_max")
    feature_range: tuple[FiniteFloat, FiniteFloat] = (0.0, 1.0)

    @model_validator(mode="after")
    def _range(self) -> "MinMax":
        if not self.feature_range[1] > self.feature_range[0]:
            raise ValueError("feature_range must be [low, high] with high > low")
        return self


class Rescale(StrictModel):
    """x ← x·scale + offset (Keras Rescaling), e.g. scale: 0.00392156862745098 for pixels."""

    type: _id("rescale")
    scale: FiniteFloat
    offset: FiniteFloat = 0.0


class OneHot(StrictModel):
    """y class indices [n, 1] ← one-hot [n, num_classes]."""

    type: _id("one_hot")
    num_classes: bounded_int(ge=2) | None = None  # default: from the training labels


class Flatten(StrictModel):
    """x [n, d1, ..., dk] ← [n, d1·...·dk]."""

    type: _id("flatten")


class Reshape(StrictModel):
    """x [n, ...] ← [n, *target_shape] (the same number of values per sample)."""

    type: _id("reshape")
    target_shape: Shape


# ---------------------------------------------------------------- augmentation (training batches only)

FillMode = Annotated[Literal["reflect", "wrap", "nearest", "constant"], BeforeValidator(_snake)]
Interpolation = Annotated[Literal["bilinear", "nearest"], BeforeValidator(_snake)]
_Fraction = Annotated[float, Field(ge=-1, le=1), BeforeValidator(_finite)]
# Keras factors: f means the range [-f, f]; [low, high] gives it directly
Factor = Union[Annotated[float, Field(ge=0, le=1), BeforeValidator(_finite)], tuple[_Fraction, _Fraction]]


def factor_range(factor: Any) -> tuple[float, float]:
    """A Keras factor → (low, high)."""
    if isinstance(factor, (int, float)):
        return -float(factor), float(factor)
    return float(factor[0]), float(factor[1])


class _Augmentation(StrictModel):
    """Random image transforms applied to training batches only, freshly drawn every batch
    (validation, evaluate and predict see the images unchanged). Images are [rows, cols,
    channels]: put these steps after the reshape that makes them so."""

    seed: Seed | None = None  # default: the config seed

    @model_validator(mode="after")
    def _ordered_factors(self) -> "_Augmentation":
        for name in ("factor", "height_factor", "width_factor"):
            value = getattr(self, name, None)
            if isinstance(value, tuple) and value[0] > value[1]:
                raise ValueError(f"{name} [{value[0]}, {value[1]}] must be [low, high] with low <= high")
        return self


class RandomFlip(_Augmentation):
    """Each image flipped left-right and/or top-bottom with probability 1/2 (Keras RandomFlip)."""

    type: _id("random_flip")
    mode: Annotated[Literal["horizontal", "vertical", "horizontal_and_vertical"], BeforeValidator(_snake)] = "horizontal_and_vertical"  # Keras default


class RandomTranslation(_Augmentation):
    """Shifts by a fraction of the height and width drawn from the factors (Keras RandomTranslation)."""

    type: _id("random_translation")
    height_factor: Factor  # 0.1: up to 10% of the rows, either way; [-0.2, 0.3]: 20% up to 30% down
    width_factor: Factor
    fill_mode: FillMode = "reflect"  # Keras default
    interpolation: Interpolation = "bilinear"
    fill_value: FiniteFloat = 0.0  # for fill_mode constant


class RandomRotation(_Augmentation):
    """Rotates by factor·2π radians, counter-clockwise for positive values (Keras RandomRotation)."""

    type: _id("random_rotation")
    factor: Factor  # 0.05: up to ±18°
    fill_mode: FillMode = "reflect"
    interpolation: Interpolation = "bilinear"
    fill_value: FiniteFloat = 0.0


class RandomZoom(_Augmentation):
    """Scales by 1 + a value drawn from the factors, about the centre; positive zooms out
    (Keras RandomZoom). width_factor None keeps the aspect ratio (one draw for both)."""

    type: _id("random_zoom")
    height_factor: Factor
    width_factor: Factor | None = None
    fill_mode: FillMode = "reflect"
    interpolation: Interpolation = "bilinear"
    fill_value: FiniteFloat = 0.0


AUGMENTATION_CONFIGS: dict[str, type[StrictModel]] = {
    "random_flip": RandomFlip,
    "random_translation": RandomTranslation,
    "random_rotation": RandomRotation,
    "random_zoom": RandomZoom,
}


PREPROCESSING_CONFIGS: dict[str, type[StrictModel]] = {
    "standardize": Standardize,
    "min_max": MinMax,
    "rescale": Rescale,
    "one_hot": OneHot,
    "flatten": Flatten,
    "reshape": Reshape,
    **AUGMENTATION_CONFIGS,
}


def _check_step(value: Any) -> Any:
    if isinstance(value, str):  # `- standardize` is short for `- {type: standardize}`
        value = {"type": value}
    if isinstance(value, dict):
        name = value.get("type")
        if name is None:
            raise ValueError(f"a preprocessing step needs a type: one of {', '.join(PREPROCESSING_CONFIGS)}")
        if not isinstance(name, str) or _snake(name) not in PREPROCESSING_CONFIGS:
            choices = list(PREPROCESSING_CONFIGS)
            hint = did_you_mean(str(name), choices)
            raise ValueError(
                f"unknown preprocessing step {name!r}"
                + (f"; did you mean {hint!r}?" if hint else f"; valid: {', '.join(choices)}")
            )
    return value


def _validate_step(value: Any) -> Any:
    if isinstance(value, tuple(PREPROCESSING_CONFIGS.values())):
        return value
    value = _check_step(value)
    if not isinstance(value, dict):
        raise ValueError("a preprocessing step is a mapping like {type: standardize}")
    return PREPROCESSING_CONFIGS[_snake(value["type"])].model_validate(value)


PreprocessingStep = Annotated[Any, PlainValidator(  # one of PREPROCESSING_CONFIGS, or its id alone
    _validate_step, json_schema_input_type=Union[(Literal[tuple(PREPROCESSING_CONFIGS)], *PREPROCESSING_CONFIGS.values())])]


# ---------------------------------------------------------------- the section


def _validate_target_step(value: Any) -> Any:
    if isinstance(value, Standardize):
        return value
    if isinstance(value, str):
        value = {"type": value}
    if not isinstance(value, dict) or _snake(str(value.get("type"))) != "standardize":
        raise ValueError("target_preprocessing supports standardize (targets scaled for training, unscaled by predict)")
    return Standardize.model_validate(value)


TargetStep = Annotated[Any, PlainValidator(_validate_target_step)]


class DataConfig(StrictModel):
    train: SourceConfig
    validation: SourceConfig | None = None  # explicit validation data (TF.js validationData)
    validation_split: UnitInterval = 0.0  # hold out this last fraction of train (TF.js validationSplit)
    preprocessing: list[PreprocessingStep] = []
    target_preprocessing: list[TargetStep] = []  # [standardize]: regression targets scaled for training

    @model_validator(mode="after")
    def _one_validation(self) -> "DataConfig":
        if self.validation is not None and self.validation_split > 0:
            raise ValueError("give validation or validation_split, not both")
        return self

    @model_validator(mode="after")
    def _augmentation_last(self) -> "DataConfig":
        seen = None
        for step in self.preprocessing:
            if step.type in AUGMENTATION_CONFIGS:
                seen = seen or step.type
            elif seen is not None and step.type != "one_hot":
                raise ValueError(f"preprocessing {step.type} comes after {seen}: augmentation steps act on the "
                                 f"training batches, so they go last")
        return self


ZipSource.model_rebuild()
StreamConfig.model_rebuild()
StreamSource.model_rebuild()
DataConfig.model_rebuild()
