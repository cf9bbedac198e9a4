"""compile(): resolve the optimizer, loss and metric ids, check they suit the model's output
(and, given data, its inputs and targets), and build the optimizer's slots."""

from __future__ import annotations

from typing import Any

import numpy as np

from trainctl.errors import ConfigValueError, DataError


class CompileError(ConfigValueError):
    """Loss or metrics that do not suit the model, each with its config path."""


def compile_model(model, optimizer: Any, loss: Any, metrics: list[Any]) -> None:
    """Resolve optimizer/loss/metric ids, check they suit the model's output, build slots."""
    from trainctl.nn.losses import LOSSES
    from trainctl.nn.metrics import check_metric_applicable, resolve_metric
    from trainctl.nn.optimizers import Optimizer, build_optimizer

    loss_obj = LOSSES.get(loss) if isinstance(loss, str) else loss
    problems = [("loss", message) for message in check_loss_applicable(model, loss_obj)]
    resolved = []
    for index, metric in enumerate(metrics):
        resolved_metric = resolve_metric(metric, loss_obj.name, (None, *model.output_shape))
        problem = check_metric_applicable(resolved_metric, loss_obj.name, (None, *model.output_shape))
        if problem:
            problems.append((f"metrics.{index}", f"{metric}: {problem}"))
        resolved.append(resolved_metric)
    if problems:
        raise CompileError(problems)
    model.loss = loss_obj
    model.metrics = resolved
    if hasattr(optimizer, "to_dict"):  # a validated TypedSpec from the config
        optimizer = optimizer.to_dict()
    model.optimizer = optimizer if isinstance(optimizer, Optimizer) else build_optimizer(optimizer)
    if model.shapes_only:  # validate / summary: the slots are counted, never allocated
        return
    if hasattr(model.optimizer, "build_flat") and model.trainable_weights:
        model.optimizer.build_flat(model.trainable_weights, model.flat_values, model.flat_grads)
    else:
        model.optimizer.build(model.trainable_weights)


def last_activation(model) -> str | None:
    for layer in reversed(model.layers):
        if layer.output_activation is not None:
            return layer.output_activation.name
        if layer.weights:  # a weighted layer without activation ends the search
            return None
    return None


def check_loss_applicable(model, loss) -> list[str]:
    """Loss vs output activation and width, as far as it can be told without data."""
    return loss.check_output(model.output_shape[-1], last_activation(model))


def check_targets(model, y: np.ndarray, where: str) -> None:
    """Targets vs model output and loss: shape, label ranges, one-hot width (Loss.check_targets)."""
    model.loss.check_targets(y, tuple(model.output_shape), where)


def input_readers(model) -> list:
    """The layers that read the model's input values: the first, and each after it while the
    layers before pass the values on unchanged (Layer.passes_values: Flatten, Reshape)."""
    readers = []
    for layer in model.layers:
        readers.append(layer)
        if not layer.passes_values:
            break
    return readers


def check_inputs(model, x: np.ndarray, where: str) -> None:
    if tuple(x.shape[1:]) != tuple(model.input_shape):
        raise DataError(f"{where}: inputs have shape [n,{','.join(map(str, x.shape[1:]))}] but the model "
                        f"expects [n,{','.join(map(str, model.input_shape))}]")
    for layer in input_readers(model):
        layer.check_input(x, where)  # values the layer accepts (embedding indices, in a TimeDistributed too)
