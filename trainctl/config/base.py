"""Building blocks shared by every config model: strictness, camelCase aliases, registry ids.

Every section of the config is a `StrictModel`: unknown keys are errors, snake_case keys
are canonical and the TF.js camelCase spelling is accepted as an alias.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, ClassVar

from collections.abc import Mapping

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, Strict, ValidationError
from pydantic.alias_generators import to_camel

from trainctl.errors import TrainctlError
from trainctl.registry import Registry, did_you_mean


class StrictModel(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        alias_generator=to_camel,
        populate_by_name=True,
        frozen=False,
        validate_default=True,
        # Build each model's validator when it is first used, not when its class is defined:
        # importing the registries defines ~120 models (every layer's, callback's, source's
        # Params) and a config uses a handful; building them all cost ~0.3 s of every start.
        defer_build=True,
    )

    def to_dict(self) -> dict[str, Any]:
        """Plain snake_case dict, for saving the resolved config and get_config()."""
        return self.model_dump(mode="json", by_alias=False)


class Configured:
    """A registry entry configured by its nested `Params` (initializers, regularizers,
    optimizers): built from a validated model or from keyword options; its config is
    `{"type": id, **options}`, options left unset (None) out."""

    type_id: ClassVar[str]
    Params: ClassVar[type[StrictModel]] = StrictModel

    def __init__(self, params: StrictModel | None = None, /, **kwargs: Any):
        self.params = params if params is not None else self.Params(**kwargs)

    def get_config(self) -> dict[str, Any]:
        config = {k: v for k, v in self.params.to_dict().items() if v is not None}
        return {"type": self.type_id, **config}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.params!r})"


class RegistryRef:
    """Field metadata naming the registry a `registry_id` / `typed_spec` field draws from, so
    code that translates configs (the interop formats) knows a field's kind without guessing
    from its name: `[m.registry for m in field.metadata if isinstance(m, RegistryRef)]`."""

    def __init__(self, registry: Registry, *, spec: bool):
        self.registry = registry
        self.spec = spec  # True: `{type: id, **params}` mapping; False: a bare id

    def __repr__(self) -> str:
        return f"RegistryRef({self.registry.kind!r}, spec={self.spec})"


def registry_id(registry: Registry) -> Any:
    """A str field whose value must be an id of `registry`; resolved to its canonical spelling."""

    def resolve(value: Any) -> Any:
        if not isinstance(value, str):
            raise ValueError(f"expected a {registry.kind} id (a string), got {type(value).__name__}")
        try:
            return registry.resolve(value)
        except Exception as error:  # UnknownIdError: its message carries "did you mean"
            raise ValueError(str(error)) from None

    return Annotated[str, BeforeValidator(resolve), RegistryRef(registry, spec=False)]


def _finite(value: float) -> float:
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("must be a finite number, not .inf or .nan")
    return value


# The finite check runs before the range check, so `.nan` and `.inf` get the same message.
FiniteFloat = Annotated[float, BeforeValidator(_finite)]
PositiveFloat = Annotated[float, Field(gt=0), BeforeValidator(_finite)]
NonNegativeFloat = Annotated[float, Field(ge=0), BeforeValidator(_finite)]
UnitInterval = Annotated[float, Field(ge=0, lt=1), BeforeValidator(_finite)]  # rates like dropout
# Integer fields are strict (`units: true` or `units: '16'` is an error, not 1 or 16) and
# bounded: a count or size above 2^31 - 1 cannot be indexed by the kernels' int32 loops and
# never fits in memory as floats; what fits below the bound is checked by the memory estimate
# (trainctl.runs.budget) before anything is allocated.
MAX_COUNT = 2**31 - 1
MAX_SEED = 2**32 - 1  # numpy's and TF's seed range
PositiveInt = Annotated[int, Strict(), Field(gt=0, le=MAX_COUNT)]
NonNegativeInt = Annotated[int, Strict(), Field(ge=0, le=MAX_COUNT)]
Size = PositiveInt  # an axis length (input_shape, target_shape)
Seed = Annotated[int, Strict(), Field(ge=0, le=MAX_SEED)]
# A dict key read back from JSON is a string ("0"): lax, but bounded and never a bool.
IndexKey = Annotated[int, Field(ge=0, le=MAX_COUNT)]


def _run_file_name(value: Any) -> Any:
    if not isinstance(value, str):
        return value  # the str type reports it
    parts = value.replace("\\", "/").split("/")
    if (not value.strip() or "\0" in value or value.startswith(("/", "~")) or ".." in parts
            or (len(value) > 1 and value[1] == ":")):
        raise ValueError(f"must be a file name inside the run directory (relative, without '..'), "
                         f"got {value[:60]!r}")
    return value


# A file a callback writes: relative to the run directory and inside it (checked again after
# symlinks when it is opened: trainctl.runs.files.inside_run).
RunFileName = Annotated[str, BeforeValidator(_run_file_name), Field(min_length=1, max_length=255)]


def bounded_int(*, ge: int | None = None, gt: int | None = None, le: int = MAX_COUNT) -> Any:
    """A strict integer field with these bounds (le defaults to MAX_COUNT)."""
    return Annotated[int, Strict(), Field(ge=ge, gt=gt, le=le)]


def typed_spec(registry: Registry, *, allow_null: bool = False) -> Any:
    """A field holding an id (`glorot_uniform`) or a mapping with `type` and parameters
    (`{type: random_normal, stddev: 0.1}`). Normalised to `{"type": id, **params}` with the
    entry's defaults filled, validated against the entry's `Params` model."""

    def normalise(value: Any) -> Any:
        if value is None and allow_null:
            return None
        try:
            cls, params = resolve_spec(registry, value)
        except TrainctlError as error:
            raise ValueError(str(error)) from None
        return {"type": registry.resolve(value if isinstance(value, str) else value["type"]), **params.to_dict()}

    return Annotated[Any, BeforeValidator(normalise), RegistryRef(registry, spec=True)]


def spec_id(registry: Registry, spec: Any, key: str = "type") -> tuple[str, dict[str, Any]]:
    """The canonical id of an "id or {key: id, ...}" value (`"adam"`, `{"type": "adam", ...}`,
    `{"generator": "teacher", ...}`) and its other options; every problem is one TrainctlError
    line (an unknown id with "did you mean"). The one resolver: resolve_spec below, and the data
    section's generators, preprocessing steps and source forms, go through it."""
    if isinstance(spec, str):
        return registry.resolve(spec), {}
    if isinstance(spec, Mapping):
        options = dict(spec)
        if key not in options:
            raise TrainctlError(
                f"{registry.kind} mapping needs a {key!r} key (one of: {', '.join(registry.names())})"
            )
        return registry.resolve(options.pop(key)), options  # UnknownIdError (a TrainctlError) with a hint
    raise TrainctlError(f"{registry.kind} must be an id or a mapping with {key!r}, got {type(spec).__name__}")


def resolve_spec(registry: Registry, spec: Any) -> tuple[Any, StrictModel]:
    """An id (`"adam"`) or a mapping with `type` (`{"type": "adam", "beta1": 0.8}`) →
    (registered class, its validated `Params`). Every problem is one TrainctlError line.

    Shared by initializers, regularizers and optimizers: all three are "id or mapping".
    """
    canonical, options = spec_id(registry, spec)
    cls = registry.get(canonical)
    try:
        params = cls.Params.model_validate(options)
    except ValidationError as error:
        raise TrainctlError(f"{registry.kind} {canonical!r}: {_describe(error, cls.Params)}") from None
    return cls, params


def _describe(error: ValidationError, model: type[StrictModel]) -> str:
    problems = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"])
        if item["type"] == "extra_forbidden":
            hint = did_you_mean(str(item["loc"][-1]), sorted(model.model_fields))
            problems.append(f"unknown key {where!r}" + (f"; did you mean {hint!r}?" if hint else ""))
        elif item["type"] == "missing":
            problems.append(f"{where}: required, no default")
        else:
            problems.append(f"{where}: {item['msg']}" if where else item["msg"])
    return "; ".join(problems)
