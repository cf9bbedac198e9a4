"""Layers, looked up by id in LAYERS. Each layer module registers its types when imported, and
LAYERS imports a module when one of its ids is first looked up (a Dense model's config loads
core.py, not the convolution, recurrent and other modules): TYPES_BY_MODULE lists them all
(tests/test_layer_contract.py holds it to what the modules register)."""

from trainctl.nn.layers.base import LAYERS, BuildContext, Layer, LayerParams, Weight

TYPES_BY_MODULE = {  # module: the layer ids and aliases it registers
    "core": ("dense", "activation", "dropout", "flatten", "reshape"),
    "advanced_activations": ("leaky_re_lu", "leaky_relu", "elu", "re_lu", "relu_layer", "thresholded_re_lu",
                             "thresholded_relu", "prelu", "p_re_lu", "softmax"),
    "conv": ("conv1d", "conv2d", "conv2d_transpose"),
    "depthwise": ("depthwise_conv2d", "separable_conv2d"),
    "pooling": ("max_pooling1d", "average_pooling1d", "max_pooling2d", "average_pooling2d",
                "global_average_pooling1d", "global_max_pooling1d", "global_average_pooling2d",
                "global_max_pooling2d"),
    "normalization": ("batch_normalization", "layer_normalization"),
    "noise": ("spatial_dropout1d", "spatial_dropout2d", "gaussian_noise", "gaussian_dropout", "alpha_dropout"),
    "reshaping": ("zero_padding1d", "zero_padding2d", "cropping1d", "cropping2d", "cropping2_d", "up_sampling1d",
                  "upsampling1d", "up_sampling2d", "upsampling2d", "permute", "repeat_vector"),
    "embedding": ("embedding",),
    "masking": ("masking",),
    "recurrent": ("simple_rnn", "lstm", "gru"),  # registered by recurrent_cells, which recurrent imports last
    "wrappers": ("bidirectional", "time_distributed"),
}
LAYERS.load_on_demand({f"trainctl.nn.layers.{module}": names for module, names in TYPES_BY_MODULE.items()})

__all__ = ["LAYERS", "BuildContext", "Layer", "LayerParams", "Weight", "TYPES_BY_MODULE"]
