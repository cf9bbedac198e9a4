"""Model formats other runtimes read and write: TF.js layers-model, Keras 3 `.keras`, ONNX.

`keras_objects` translates layer configs, initializers, regularizers, activations and
optimizers between trainctl specs and the Keras-style `{class_name, config}` objects that
TF.js and Keras serialise; `tfjs`, `keras` and `onnx` write (the first two also read) the
files. Nothing here imports numba.
"""

from trainctl.errors import ArtifactError, ExportRefused

FORMATS = ("tfjs", "keras", "onnx")
__all__ = ["FORMATS", "ExportRefused", "ImportFailed"]


class ImportFailed(ArtifactError):
    """A TF.js or Keras file that cannot become a trainctl model: one line naming the file
    and the place in it (layer, weight, shard)."""
