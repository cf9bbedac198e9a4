"""Model formats other runtimes read and write: TF.js layers-model, Keras 3 `.keras`, ONNX.

`keras_objects` translates layer configs, initializers, regularizers, activations and
optimizers between trainctl specs and the Keras-style `{class_name, config}` objects that
TF.js and Keras serialise; `tfjs`, `keras` and `onnx` write (the first two also read) the
files. Nothing here imports numba.
"""

from trainctl.errors import ArtifactError, TrainctlError

FORMATS = ("tfjs", "keras", "onnx")


class ExportRefused(TrainctlError):
    """A model (or its training setup) that a format cannot express: one line naming the
    layer or option and the format."""


class ImportFailed(ArtifactError):
    """A TF.js or Keras file that cannot become a trainctl model: one line naming the file
    and the place in it (layer, weight, shard)."""
