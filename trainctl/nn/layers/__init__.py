"""Layers, looked up by id in LAYERS. Importing this package registers every layer type."""

from trainctl.nn.layers.base import LAYERS, BuildContext, Layer, LayerParams, Weight
from trainctl.nn.layers import core  # noqa: F401  (registers dense, activation, dropout, flatten, reshape)
from trainctl.nn.layers import recurrent  # noqa: F401  (simple_rnn, lstm, gru, masking, bidirectional, time_distributed)

__all__ = ["LAYERS", "BuildContext", "Layer", "LayerParams", "Weight"]
