"""class_weight: each sample weighted by its class's weight, as TF.js's fit does for arrays
and fitDataset for streams."""

from __future__ import annotations

import numpy as np

from trainctl.data.source import BatchSource, WrappedSource


def class_weight_to_sample_weight(y: np.ndarray, class_weight: dict[int, float]) -> np.ndarray:
    """TF.js standardizeClassWeights: each sample's weight is its class's weight (argmax of a
    one-hot target, the label itself for sparse or single-unit targets)."""
    if y.ndim == 2 and y.shape[1] > 1:
        classes = np.argmax(y, axis=1)
    else:
        classes = np.rint(y.reshape(y.shape[0], -1)[:, 0]).astype(np.int64)
    weights = np.ones(y.shape[0], np.float32)
    for cls, weight in class_weight.items():
        weights[classes == int(cls)] = weight
    return weights


class ClassWeightedSource(WrappedSource):
    """A BatchSource whose batches carry each sample's class weight (times any weight the
    source already gives), as fit's class_weight does for arrays."""

    def __init__(self, source: BatchSource, class_weight: dict):
        super().__init__(source)
        self.class_weight = class_weight

    def batches(self, epoch: int, batch_size: int, start_batch: int = 0):
        for x, y, weights in self.source.batches(epoch, batch_size, start_batch):
            class_weights = class_weight_to_sample_weight(np.asarray(y).reshape(len(y), -1), self.class_weight)
            yield x, y, class_weights if weights is None else class_weights * weights
