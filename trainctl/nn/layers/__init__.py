"""Layers, looked up by id in LAYERS. Importing this package registers every layer type."""

from trainctl.nn.layers.base import LAYERS, BuildContext, Layer, LayerParams, Weight
from trainctl.nn.layers import core  # noqa: F401  (registers dense, activation, dropout, flatten, reshape)
from trainctl.nn.layers import conv, depthwise, pooling  # noqa: F401  (convolution and pooling layers)
from trainctl.nn.layers import advanced_activations, embedding, noise, normalization, reshaping  # noqa: F401
from trainctl.nn.layers import recurrent, masking, wrappers  # noqa: F401  (simple_rnn, lstm, gru via recurrent_cells; masking; bidirectional, time_distributed)

__all__ = ["LAYERS", "BuildContext", "Layer", "LayerParams", "Weight"]
