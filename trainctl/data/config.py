"""The `data:` section of the config: where the samples come from and what is done to them.

```yaml
data:
  train: {generator: teacher, n_samples: 60000, n_features: 784, n_classes: 10}
  # or {csv: data/iris.csv, target: species, labels: one_hot}
  # or {csv: data/electricity_load.csv, target: load_mw, window: 24, horizon: 1}  (a time series)
  # or {npy: x.npy, targets: y.npy}  /  {npz: file.npz, x_key: x, y_key: y}
  # or {shards: dir/, target: -1}    /  {zip: {x: SOURCE, y: SOURCE}}
  # or {stream: {source: SOURCE, shuffle: {buffer_size: 10000}, drop_remainder: false}}
  validation: {...same forms...}       # explicit validation data (TF.js validationData)
  validation_split: 0.2                # or hold out the last 20% of train (TF.js validationSplit)
  preprocessing: [{type: standardize}, {type: one_hot}, {type: reshape, target_shape: [8, 8, 1]}]
```

A source's form is chosen by its one key among `generator`, `csv`, `npy`, `npz`, `shards`,
`zip` and `stream`: the FORMATS registry of data/formats.py, one class per form.
Paths are relative to the config file's directory unless absolute.
"""

from __future__ import annotations

from typing import Annotated, Any, Union

from pydantic import PlainValidator, model_validator

from trainctl.config.base import PositiveInt, StrictModel, UnitInterval
from trainctl.data.generator_params import *  # noqa: F401,F403 - the generator models, importable from here
from trainctl.data.generator_params import GENERATOR_MODELS, GeneratorConfig
from trainctl.data.generators import GENERATORS
from trainctl.data.params import Column, LabelMode, Shape, _id, _snake  # noqa: F401 - re-exported
from trainctl.data.preprocessing_params import *  # noqa: F401,F403 - the preprocessing models, likewise
from trainctl.data.preprocessing_params import (AUGMENTATION_CONFIGS, PREPROCESSING_CONFIGS, PreprocessingStep,
                                                TargetStep, factor_range)  # noqa: F401
from trainctl.data.source_params import *  # noqa: F401,F403 - the file sources' models, likewise
from trainctl.data.source_params import (ColumnSpec, CsvSource, FillStrategy, NpySource, NpzSource,  # noqa: F401
                                         ShardsSource, _Labelled, _Table)
from trainctl.errors import TrainctlError
from trainctl.registry import did_you_mean

# generator id → options model (the GENERATORS registry's entries carry their model)
GENERATOR_CONFIGS: dict[str, type[StrictModel]] = {name: GENERATORS.get(name).Params for name in GENERATORS.names()}


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

    @model_validator(mode="after")
    def _not_windowed(self) -> "StreamConfig":
        if getattr(self.source, "csv", None) is not None and self.source.window is not None:
            raise ValueError("a time-series CSV (window:) is not streamed: its windows are views of the series "
                             "held in memory; give it as data.train without stream:")
        return self

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


def _forms(in_memory_only: bool) -> list[str]:
    """The registered forms (data/formats.py), in registration order."""
    from trainctl.data.formats import FORM_ORDER, FORMATS

    return [key for key in FORM_ORDER if not in_memory_only or FORMATS.get(key).in_memory]


def _source_validator(in_memory_only: bool):
    """Dispatch on the form key to the format's options model (FORMATS, and for `generator:`
    the GENERATORS registry through spec_id, the resolver every "id or {type: ...}" value
    uses). Plain dispatch (not a tagged union) keeps error locations free of union tags, so
    `train.target` maps back to its line in the YAML."""

    def validate(value: Any) -> Any:
        from trainctl.data.formats import FORMATS, format_of

        allowed = _forms(in_memory_only)
        if isinstance(value, StrictModel) and format_of(value).key in allowed:
            return value
        if not isinstance(value, dict):
            raise ValueError(f"a data source is a mapping with one of: {', '.join(allowed)}")
        present = [key for key in _forms(False) if key in value]
        if len(present) > 1:
            raise ValueError(f"give one of {', '.join(allowed)}, not both {present[0]} and {present[1]}")
        if not present:
            hints = [did_you_mean(str(key), allowed) for key in value]
            hint = next((h for h in hints if h), None)
            message = f"a data source needs one of: {', '.join(allowed)}"
            raise ValueError(message + (f"; did you mean {hint!r}?" if hint else ""))
        if present[0] not in allowed:
            raise ValueError(f"{present[0]!r} cannot be used here; expected one of: {', '.join(allowed)}")
        try:
            model = FORMATS.get(present[0]).params_model(value)
        except TrainctlError as error:  # an unknown generator id, with "did you mean"
            raise ValueError(str(error)) from None
        return model.model_validate(value)

    return validate


# what `trainctl schema` shows editors for a source (validation is the dispatch above): a new
# format's options model goes here too
_ArrayForms = Union[GeneratorConfig, CsvSource, NpySource, NpzSource, ShardsSource, ZipSource]  # type: ignore[valid-type]
# Declared as Any so the serializer dumps whichever model was validated (a Union of models
# would try each member and warn); the precise types are _ArrayForms / + StreamSource.
# json_schema_input_type: what `trainctl schema` shows editors (validation is the dispatch above).
FileOrGenerator = Annotated[Any, PlainValidator(_source_validator(True), json_schema_input_type=_ArrayForms)]
SourceConfig = Annotated[Any, PlainValidator(_source_validator(False),
                                             json_schema_input_type=Union[_ArrayForms, "StreamSource"])]


class ZipParts(StrictModel):
    x: FileOrGenerator
    y: FileOrGenerator


# ---------------------------------------------------------------- the section


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
