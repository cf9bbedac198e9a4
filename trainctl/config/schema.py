"""The config schema: top-level sections, `fit` options, and dispatch of typed sections
(layers, optimizer, callbacks, loss, metrics, data) to the registries that own them.

`validate_config(raw)` checks everything and returns `(Config, [])` or `(None, problems)`
with every problem found, each tied to a path in `raw`. Problems get their file positions
in `trainctl.config.load_config`.

Registries are imported lazily (`default_registries`), so this module imports before the
layer, optimizer, callback, loss, metric and data modules exist, and never imports numba.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, SerializeAsAny, ValidationError

from trainctl.config.base import (MAX_COUNT, NonNegativeFloat, NonNegativeInt, PositiveInt, Seed, StrictModel,
                                  UnitInterval, bounded_int)
from trainctl.config.problems import RawProblem, show
from trainctl.config.pydantic_errors import MISSING, clean_loc, find_key, pydantic_problems
from trainctl.registry import Registry, UnknownIdError

# -- typed sections ----------------------------------------------------------------------


class TypedSpec(BaseModel):
    """A registry entry chosen by `type` (canonical id) with its validated `Params`."""

    model_config = ConfigDict(frozen=True)

    type: str
    params: SerializeAsAny[BaseModel]

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, **dump_model(self.params)}


class NoParams(StrictModel):
    """Params of a registry entry that declares none: any key is unknown."""


def dump_model(model: BaseModel) -> dict[str, Any]:
    """snake_case JSON-able dict of `model`, leaving out keys that are null by default."""
    data = model.model_dump(mode="json", by_alias=False)
    fields = type(model).model_fields
    return {
        key: value
        for key, value in data.items()
        if not (value is None and key in fields and fields[key].default is None)
    }


# -- fit ---------------------------------------------------------------------------------

_YIELD_WORDS = ("auto", "batch", "epoch", "never")


def _yield_every(value: Any) -> Any:
    if isinstance(value, str) and value in _YIELD_WORDS:
        return value
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_COUNT:
        return value
    raise ValueError(f"must be 'auto', 'batch', 'epoch', 'never' or a number of milliseconds "
                     f">= 0, got {show(value)}")


YieldEvery = Annotated[Union[str, int], BeforeValidator(_yield_every)]


def _class_weight_keys(value: Any) -> Any:
    """`--set fit.class_weight.1=4` gives the key "1": a digit string is a class index."""
    if isinstance(value, dict):
        return {int(k) if isinstance(k, str) and k.isdigit() else k: v for k, v in value.items()}
    return value


class FitConfig(StrictModel):
    """Every option of TF.js `model.fit` / `model.fitDataset`, snake_case (camelCase accepted).

    Inputs (x, y, validationData, sampleWeight) live in `data`; `callbacks` is top-level.
    """

    epochs: PositiveInt = 1  # TF.js default; with initial_epoch, the index of the last epoch
    batch_size: PositiveInt = 32  # TF.js and Keras default
    shuffle: bool = True  # reshuffle the training rows every epoch, as TF.js
    validation_split: UnitInterval = 0.0  # fraction held out from the end, before shuffling
    validation_batch_size: PositiveInt | None = None  # None: same as batch_size
    validation_freq: PositiveInt = 1  # validate every n-th epoch
    initial_epoch: NonNegativeInt = 0  # epoch to start from (resuming)
    class_weight: Annotated[Union[dict[Union[NonNegativeInt, str], NonNegativeFloat], Literal["balanced"], None],
                            BeforeValidator(_class_weight_keys)] = None  # class index or name → weight, or balanced
    steps_per_epoch: PositiveInt | None = None  # Keras name; None: one pass over the data
    validation_steps: PositiveInt | None = None  # Keras name; None: all validation data
    batches_per_epoch: PositiveInt | None = None  # TF.js fitDataset name of steps_per_epoch
    validation_batches: PositiveInt | None = None  # TF.js fitDataset name of validation_steps
    verbose: bounded_int(ge=0, le=2) = 1  # Keras: 0 no display, 1 live bar (a line per epoch when piped), 2 a line per epoch
    yield_every: YieldEvery = "auto"  # accepted for TF.js; there is no event loop to yield to
    # trainctl: flush-to-zero/denormals-are-zero on the training thread (x86-64), as
    # torch.set_flush_denormal(True): values below 1.18e-38 (float32) become 0 instead of
    # running ~100x slower; false keeps IEEE denormals (the CLI's --keep-denormals)
    flush_denormals: bool = True
    # Keras: training steps per compiled call; auto sizes chunks to ~50 ms and uses the compiled
    # loop for long fits (results are bit-identical to step-by-step execution either way)
    steps_per_execution: Literal["auto"] | PositiveInt = "auto"
    jit_compile: bool = True  # Keras name; false runs every step from Python (the reference path)


# -- the config ----------------------------------------------------------------------------

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def _run_name(value: Any) -> Any:
    if isinstance(value, str) and not _NAME.match(value):
        raise ValueError(f"must be a simple name (letters, digits, '.', '_', '-'; it names the "
                         f"run directory), got {show(value)}")
    return value


class ModelConfig(StrictModel):
    layers: list[TypedSpec] = Field(min_length=1)  # a Sequential stack, input first


class Config(StrictModel):
    """The validated config. Build it with `validate_config` (or `load_config`), which
    dispatches layers, optimizer, callbacks, loss, metrics and data to their registries."""

    name: Annotated[str, BeforeValidator(_run_name)]
    seed: Seed = 0  # drives every random stream (trainctl.seeding)
    model: ModelConfig
    optimizer: TypedSpec
    loss: str
    metrics: list[Union[str, TypedSpec]] = Field(default_factory=list)  # ids as written, or {type: id, **options}
    data: SerializeAsAny[BaseModel]
    fit: FitConfig = Field(default_factory=FitConfig)
    callbacks: list[TypedSpec] = Field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The resolved config: snake_case keys, canonical ids, every default filled in.
        Saved as YAML and loaded back, it gives an equal Config."""
        return {
            "name": self.name,
            "seed": self.seed,
            "model": {"layers": [layer.to_dict() for layer in self.model.layers]},
            "optimizer": self.optimizer.to_dict(),
            "loss": self.loss,
            "metrics": [m if isinstance(m, str) else m.to_dict() for m in self.metrics],
            "data": dump_model(self.data),
            "fit": dump_model(self.fit),
            "callbacks": [callback.to_dict() for callback in self.callbacks],
        }


# -- registries ------------------------------------------------------------------------------


@dataclass
class Registries:
    """Where typed sections are looked up. Tests pass small fakes; the CLI uses the real ones."""

    layers: Registry
    optimizers: Registry
    callbacks: Registry
    losses: Registry
    metrics: Registry
    data_model: type[BaseModel]


def default_registries() -> Registries:
    """The real registries, imported here so that importing the config package stays cheap."""
    from trainctl.train.callbacks import CALLBACKS
    from trainctl.data.config import DataConfig
    from trainctl.nn.layers import LAYERS
    from trainctl.nn.losses import LOSSES
    from trainctl.nn.metrics import METRICS
    from trainctl.nn.optimizers import OPTIMIZERS

    return Registries(LAYERS, OPTIMIZERS, CALLBACKS, LOSSES, METRICS, DataConfig)


# -- validation ------------------------------------------------------------------------------

Path = tuple[Any, ...]


def resolve_id(registry: Registry, value: Any, path: Path) -> tuple[str | None, list[RawProblem]]:
    """The canonical id for `value`, or a problem at `path` (with "did you mean")."""
    if not isinstance(value, str):
        return None, [RawProblem(path, "value", f"must be a {registry.kind} id (a string), "
                                 f"got {show(value)}")]
    try:
        return registry.resolve(value), []
    except UnknownIdError as error:
        return None, [RawProblem(path, "value", str(error))]


def dispatch_by_type(registry: Registry, value: Any, path: Path) -> tuple[TypedSpec | None,
                                                                            list[RawProblem]]:
    """Validate `id` or `{type: id, **params}` against `registry.get(id).Params`.

    Returns the TypedSpec, or None and every problem found, located by path.
    """
    if isinstance(value, str):
        type_value, params, type_path = value, {}, path
    elif isinstance(value, dict):
        if "type" not in value:
            return None, [RawProblem(path, "parent", f"missing required key 'type' (the "
                                     f"{registry.kind})", missing="type")]
        type_value, type_path = value["type"], path + ("type",)
        params = {key: item for key, item in value.items() if key != "type"}
    else:
        return None, [RawProblem(path, "value", f"must be a {registry.kind} id or a mapping "
                                 f"with 'type', got {show(value)}")]
    type_id, problems = resolve_id(registry, type_value, type_path)
    if type_id is None:
        return None, problems
    params_model = getattr(registry.get(type_id), "Params", None) or NoParams
    model, problems = validate_model(params_model, params, path, extra_keys=("type",))
    return (TypedSpec(type=type_id, params=model) if model is not None else None), problems


def validate_model(model_cls: type[BaseModel], value: Any, path: Path,
                   extra_keys: tuple[str, ...] = ()) -> tuple[BaseModel | None, list[RawProblem]]:
    """`model_cls.model_validate(value)`, with its errors as problems under `path`."""
    try:
        return model_cls.model_validate(value), []
    except ValidationError as error:
        return None, pydantic_problems(error, value, path, model_cls, extra_keys)


def _under(path: Path, prefixes: set[Path]) -> bool:
    return any(path[: len(prefix)] == prefix for prefix in prefixes)


def _cross_checks(config: Config) -> list[RawProblem]:
    """Rules that tie two keys together."""
    problems = []
    fit = config.fit
    if fit.initial_epoch >= fit.epochs:
        problems.append(RawProblem(("fit", "initial_epoch"), "value",
                                   f"must be less than epochs ({fit.epochs}), got "
                                   f"{fit.initial_epoch}; epochs counts from 0, not from "
                                   "initial_epoch"))
    for keras, tfjs in (("steps_per_epoch", "batches_per_epoch"),
                        ("validation_steps", "validation_batches")):
        if getattr(fit, keras) is not None and getattr(fit, tfjs) is not None:
            problems.append(RawProblem(("fit", tfjs), "value", f"set either {keras} or {tfjs} "
                                       "(the TF.js name for the same thing), not both"))
    return problems


def _metric_as_written(item: Any, resolved: tuple[str | None, list[RawProblem]]) -> tuple[str | None, list[RawProblem]]:
    canonical, problems = resolved
    return (item.strip() if canonical is not None else None), problems


def validate_config(raw: Any, registries: Registries | None = None) -> tuple[Config | None,
                                                                             list[RawProblem]]:
    """Validate a whole config (plain data as loaded from YAML). Every problem is collected:
    returns (Config, []) or (None, problems)."""
    if not isinstance(raw, dict):
        return None, [RawProblem((), "value", f"the config must be a mapping of sections "
                                 f"(name, model, optimizer, ...), got {show(raw)}")]
    registries = registries or default_registries()
    work = dict(raw)
    problems: list[RawProblem] = []
    failed: set[Path] = set()  # dispatched paths with problems: pydantic's view is not wanted

    def keep(path: Path, result: Any, found: list[RawProblem]) -> Any:
        problems.extend(found)
        if found:
            failed.add(path)
        return result

    model = work.get("model")
    if isinstance(model, dict):
        layers_key = find_key(model, "layers")
        if layers_key is not MISSING and isinstance(model[layers_key], list):
            model = dict(model)
            model[layers_key] = [
                keep(("model", layers_key, index),
                     *dispatch_by_type(registries.layers, item, ("model", layers_key, index)))
                for index, item in enumerate(model[layers_key])
            ]
            work["model"] = model
    if "optimizer" in work:
        work["optimizer"] = keep(("optimizer",),
                                 *dispatch_by_type(registries.optimizers, work["optimizer"],
                                                   ("optimizer",)))
    if isinstance(work.get("callbacks"), list):
        work["callbacks"] = [
            keep(("callbacks", index),
                 *dispatch_by_type(registries.callbacks, item, ("callbacks", index)))
            for index, item in enumerate(work["callbacks"])
        ]
    if "loss" in work:
        work["loss"] = keep(("loss",), *resolve_id(registries.losses, work["loss"], ("loss",)))
    if isinstance(work.get("metrics"), list):
        # a metric id keeps the user's spelling: it is the log key ('acc' vs 'accuracy', 'mae')
        work["metrics"] = [
            keep(("metrics", index), *(_metric_as_written(item, resolve_id(registries.metrics, item, ("metrics", index)))
                                       if not isinstance(item, dict)
                                       else dispatch_by_type(registries.metrics, item, ("metrics", index))))
            for index, item in enumerate(work["metrics"])
        ]
    if "data" in work:
        work["data"] = keep(("data",), *validate_model(registries.data_model, work["data"],
                                                        ("data",)))

    config = None
    try:
        config = Config.model_validate(work)
    except ValidationError as error:
        problems.extend(p for p in pydantic_problems(error, work, (), Config)
                        if not _under(p.path, failed))
    if config is not None and not problems:
        # Cross-checks name fields by their snake_case names; point at the key as spelled.
        problems.extend(RawProblem(tuple(clean_loc(p.path, raw, p.at)[0]), p.at, p.message)
                        for p in _cross_checks(config))
    # "missing 'units'" says nothing new next to "unknown key 'unts'; did you mean 'units'?"
    suggested = {(p.path[:-1], p.suggestion) for p in problems if p.suggestion}
    problems = [p for p in problems if not (p.at == "parent" and (p.path, p.missing) in suggested)]
    return (config if not problems else None), problems
