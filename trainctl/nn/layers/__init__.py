"""Layers, looked up by id in LAYERS. Importing this package registers every layer type."""

from trainctl.nn.layers.base import LAYERS, BuildContext, Layer, LayerParams, Weight
from trainctl.nn.layers import core  # noqa: F401  (registers dense, activation, dropout, flatten, reshape)
from trainctl.nn.layers import conv, pooling  # noqa: F401  (convolution and pooling layers)

__all__ = ["LAYERS", "BuildContext", "Layer", "LayerParams", "Weight"]
