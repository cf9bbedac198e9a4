"""Optimizers, looked up by id in OPTIMIZERS: the base contract in base.py, the TF.js update
rules in rules.py (importing this package registers them)."""

from trainctl.nn.optimizers.base import (
    EPSILON,
    OPTIMIZERS,
    Optimizer,
    OptimizerParams,
    build_optimizer,
    resolve_optimizer,
)
from trainctl.nn.optimizers.rules import SGD, Adadelta, Adagrad, Adam, Adamax, Momentum, RMSProp

__all__ = ["EPSILON", "OPTIMIZERS", "Optimizer", "OptimizerParams", "build_optimizer", "resolve_optimizer",
           "SGD", "Momentum", "Adam", "Adamax", "Adagrad", "Adadelta", "RMSProp"]
