"""fit_dataset (TF.js fitDataset): a stream config as in YAML, or Python batches, trained
through the same fit loop."""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np

from trainctl.errors import ConfigValueError
from trainctl.train.callbacks import History
from trainctl.train.compile import check_inputs, check_targets
from trainctl.train.loop import fit


def fit_dataset(model, dataset: Any, *, epochs: int = 1, batch_size: int = 32, batches_per_epoch: int | None = None,
                validation_data: Any = None, validation_batches: int | None = None,
                class_weight: dict | None = None, callbacks: Iterable[Any] = (), initial_epoch: int = 0,
                base_dir: Any = None, **options) -> History:
    """TF.js fitDataset. `dataset`: a stream config as in YAML (`{"stream": {"source": {"npy":
    ...}, "shuffle": 10000}, "preprocessing": [...]}`, or the inner `{"source": ..., ...}`;
    paths relative to `base_dir`, default the working directory; batched by `batch_size`), or Python batches:
    a function returning an iterable (called once per epoch), or a generator / iterable
    (continued across epochs), each item `(x, y)`, `(x, y, w)` or `{"xs": x, "ys": y}`.
    `validation_data`: arrays `(x, y)` or a dataset in the same forms."""
    source = _dataset_source(model, dataset, batch_size, batches_per_epoch, base_dir, "dataset")
    validation = validation_data
    if validation_data is not None and not isinstance(validation_data, (tuple, list)):
        validation = _dataset_source(model, validation_data, batch_size, validation_batches, base_dir,
                                     "validation_data")
    # A Python source stops itself after batches_per_epoch (a shared generator loses no batch);
    # a stream is cut by the loop.
    from trainctl.data.python_source import PythonBatchSource

    steps = None if isinstance(source, PythonBatchSource) else batches_per_epoch
    return fit(model, source=source, epochs=epochs, batch_size=batch_size, validation_data=validation,
               validation_steps=validation_batches, class_weight=class_weight, callbacks=callbacks,
               initial_epoch=initial_epoch, steps_per_epoch=steps, **options)


def _dataset_source(model, dataset: Any, batch_size: int, batches: int | None, base_dir: Any, where: str):
    if isinstance(dataset, dict):
        from pathlib import Path

        from pydantic import ValidationError

        from trainctl.data import DataConfig, load_data

        spec = dict(dataset)
        preprocessing = spec.pop("preprocessing", [])  # the map stage, as data.preprocessing in YAML
        spec = spec if "stream" in spec else {"stream": spec}
        try:
            data_config = DataConfig.model_validate({"train": spec, "preprocessing": preprocessing})
        except ValidationError as error:
            first = error.errors()[0]
            place = ".".join(str(part) for part in first["loc"][1:])
            raise ConfigValueError([(f"{where}.{place}".rstrip("."), first["msg"])]) from None
        data = load_data(data_config, seed=model.seed, base_dir=Path(base_dir or "."), loss=model.loss.name)
        stream = data.stream
        _check_dataset_shapes(model, stream, f"{where} ({data.description})" if data.description else where)
        return stream
    from trainctl.data.python_source import PythonBatchSource

    source = PythonBatchSource(dataset, dtype=model.dtype, batches_per_epoch=batches, where=where)
    _check_dataset_shapes(model, source, where)
    return source


def _check_dataset_shapes(model, source, where: str) -> None:
    check_inputs(model, np.empty((0, *source.x_shape), model.dtype), where)
    check_targets(model, np.empty((0, *source.y_shape), model.dtype), where)
