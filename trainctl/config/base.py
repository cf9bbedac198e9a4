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


# The finite check runs before the range check, so `.nan` and `.inf` get the same message.
FiniteFloat = Annotated[float, BeforeValidator(_finite)]
PositiveFloat = Annotated[float, Field(gt=0), BeforeValidator(_finite)]
NonNegativeFloat = Annotated[float, Field(ge=0), BeforeValidator(_finite)]
UnitInterval = Annotated[float, Field(ge=0, lt=1), BeforeValidator(_finite)]  # rates like dropout
PositiveInt = Annotated[int, Field(gt=0)]
NonNegativeInt = Annotated[int, Field(ge=0)]


def typed_spec(registry: Registry, *, allow_null: bool = False) -> Any:
    """A field holding an id (`glorot_uniform`) or a mapping with `type` and parameters
    (`{type: random_normal, stddev: 0.1}`). Normalised to `{"type": id, **params}` with the
    entry's defaults filled, validated against the entry's `Params` model."""
    from pydantic import ValidationError

    def normalise(value: Any) -> Any:
        if value is None and allow_null:
            return None
        if isinstance(value, str):
            type_name, params = value, {}
        elif isinstance(value, dict) and "type" in value:
            type_name, params = value["type"], {k: v for k, v in value.items() if k != "type"}
        else:
            raise ValueError(f"expected a {registry.kind} id or a mapping with 'type', got {value!r}")
        try:
            canonical = registry.resolve(type_name)
        except Exception as error:
            raise ValueError(str(error)) from None
        entry = registry.get(canonical)
        try:
            validated = entry.Params.model_validate(params)
        except ValidationError as error:
            first = error.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            message = first["msg"]
            if first["type"] == "extra_forbidden":
                from trainctl.registry import did_you_mean

                hint = did_you_mean(str(first["loc"][-1]), sorted(entry.Params.model_fields))
                message = f"unknown key for {canonical}" + (f"; did you mean {hint!r}?" if hint else "")
            raise ValueError(f"{canonical}.{where}: {message}" if where else message) from None
        return {"type": canonical, **validated.to_dict()}

    return Annotated[Any, BeforeValidator(normalise)]
