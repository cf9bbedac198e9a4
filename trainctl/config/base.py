"""Building blocks shared by every config model: strictness, camelCase aliases, registry ids.

Every section of the config is a `StrictModel`: unknown keys are errors, snake_case keys
are canonical and the TF.js camelCase spelling is accepted as an alias.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field
from pydantic.alias_generators import to_camel

from trainctl.registry import Registry


class StrictModel(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        alias_generator=to_camel,
        populate_by_name=True,
        frozen=False,
        validate_default=True,
    )

    def to_dict(self) -> dict[str, Any]:
        """Plain snake_case dict, for saving the resolved config and get_config()."""
        return self.model_dump(mode="json", by_alias=False)


def registry_id(registry: Registry) -> Any:
    """A str field whose value must be an id of `registry`; resolved to its canonical spelling."""

    def resolve(value: Any) -> Any:
        if not isinstance(value, str):
            raise ValueError(f"expected a {registry.kind} id (a string), got {type(value).__name__}")
        try:
            return registry.resolve(value)
        except Exception as error:  # UnknownIdError: its message carries "did you mean"
            raise ValueError(str(error)) from None

    return Annotated[str, BeforeValidator(resolve)]


def _finite(value: float) -> float:
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("must be a finite number, not .inf or .nan")
    return value


FiniteFloat = Annotated[float, AfterValidator(_finite)]
PositiveFloat = Annotated[float, Field(gt=0), AfterValidator(_finite)]
NonNegativeFloat = Annotated[float, Field(ge=0), AfterValidator(_finite)]
UnitInterval = Annotated[float, Field(ge=0, lt=1), AfterValidator(_finite)]  # rates like dropout
PositiveInt = Annotated[int, Field(gt=0)]
NonNegativeInt = Annotated[int, Field(ge=0)]
