"""The preprocessing steps' options (`data.preprocessing: [...]`), one model per step id, in the
PREPROCESSING registry; augmentation steps (training batches only) are among them."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BeforeValidator, Field, PlainValidator, model_validator

from trainctl.config.base import _finite, FiniteFloat, PositiveFloat, Seed, StrictModel, bounded_int, spec_id
from trainctl.data.params import Shape, _id, _snake
from trainctl.errors import TrainctlError
from trainctl.registry import Registry

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


PREPROCESSING: Registry[type[StrictModel]] = Registry("preprocessing step")
_STEPS = {"standardize": Standardize, "min_max": MinMax, "rescale": Rescale, "one_hot": OneHot, "flatten": Flatten,
          "reshape": Reshape, "random_flip": RandomFlip, "random_translation": RandomTranslation,
          "random_rotation": RandomRotation, "random_zoom": RandomZoom}
for _name, _step in _STEPS.items():
    PREPROCESSING.register(_name)(_step)
AUGMENTATION_CONFIGS: dict[str, type[StrictModel]] = {name: step for name, step in _STEPS.items()
                                                      if issubclass(step, _Augmentation)}
PREPROCESSING_CONFIGS: dict[str, type[StrictModel]] = dict(_STEPS)  # id → model, in the order the docs list them


def _validate_step(value: Any) -> Any:
    """`standardize` or `{type: standardize, ...}` → the step's model (ids through spec_id)."""
    if isinstance(value, tuple(PREPROCESSING_CONFIGS.values())):
        return value
    if isinstance(value, dict) and "type" not in value:
        raise ValueError(f"a preprocessing step needs a type: one of {', '.join(PREPROCESSING_CONFIGS)}")
    if not isinstance(value, (str, dict)):
        raise ValueError("a preprocessing step is a mapping like {type: standardize}")
    try:
        name, _ = spec_id(PREPROCESSING, value)
    except TrainctlError as error:
        raise ValueError(str(error)) from None
    return PREPROCESSING.get(name).model_validate({"type": name} if isinstance(value, str) else value)


PreprocessingStep = Annotated[Any, PlainValidator(  # one of PREPROCESSING_CONFIGS, or its id alone
    _validate_step, json_schema_input_type=Union[(Literal[tuple(PREPROCESSING_CONFIGS)], *PREPROCESSING_CONFIGS.values())])]


def _validate_target_step(value: Any) -> Any:
    if isinstance(value, Standardize):
        return value
    if isinstance(value, str):
        value = {"type": value}
    if not isinstance(value, dict) or _snake(str(value.get("type"))) != "standardize":
        raise ValueError("target_preprocessing supports standardize (targets scaled for training, unscaled by predict)")
    return Standardize.model_validate(value)


TargetStep = Annotated[Any, PlainValidator(_validate_target_step)]
