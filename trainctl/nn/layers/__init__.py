"""Layers, looked up by id in LAYERS. Importing this package registers every layer type."""

from trainctl.nn.layers.base import LAYERS, BuildContext, Layer, LayerParams, Weight
from trainctl.nn.layers import core  # noqa: F401  (registers dense, activation, dropout, flatten, reshape)

__all__ = ["LAYERS", "BuildContext", "Layer", "LayerParams", "Weight"]
