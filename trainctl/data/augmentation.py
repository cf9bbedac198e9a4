"""Seeded image augmentation for training batches (Keras's RandomFlip, RandomTranslation,
RandomRotation, RandomZoom), declared as the last `data.preprocessing` steps.

    augmentation = build_augmentation(steps, image_shape, seed)   # None when no step augments
    source = augmentation.wrap(source)                             # training batches only

Each step draws its per-image parameters from rng_for(seed, "augment", step, epoch, batch),
so a resumed run (which restarts at a batch index) sees the same transforms, and the
transforms do not depend on how many batches another run skipped.
"""

from __future__ import annotations

import math
from typing import Any, Iterator

import numpy as np

from trainctl.data.config import (
    AUGMENTATION_CONFIGS,
    RandomFlip,
    RandomRotation,
    RandomTranslation,
    RandomZoom,
    factor_range,
)
from trainctl.data.source import WrappedSource
from trainctl.errors import DataError
from trainctl.seeding import rng_for

_FILL = {"reflect": 0, "wrap": 1, "nearest": 2, "constant": 3}  # kernels/augmentation.py codes
_INTERPOLATION = {"bilinear": 0, "nearest": 1}


def build_augmentation(steps: list[Any], image_shape: tuple[int, ...], seed: int) -> "Augmentation | None":
    chosen = [step for step in steps if step.type in AUGMENTATION_CONFIGS]
    if not chosen:
        return None
    if len(image_shape) != 3:
        raise DataError(f"preprocessing {chosen[0].type} needs images [rows, cols, channels], but samples have shape "
                        f"{list(image_shape)} (add {{type: reshape, target_shape: [rows, cols, channels]}} before it)")
    return Augmentation(chosen, tuple(image_shape), seed)


class Augmentation:
    def __init__(self, steps: list[Any], image_shape: tuple[int, int, int], seed: int):
        self.steps, self.image_shape, self.seed = steps, image_shape, seed
        self._buffers: tuple[np.ndarray, np.ndarray] | None = None
        self._matrices = np.zeros((0, 6))

    def wrap(self, source: Any) -> "AugmentedSource":
        return AugmentedSource(source, self)

    def _ensure(self, n: int, dtype: np.dtype) -> None:
        if self._buffers is None or self._buffers[0].shape[0] < n or self._buffers[0].dtype != dtype:
            self._buffers = (np.empty((n, *self.image_shape), dtype), np.empty((n, *self.image_shape), dtype))
            self._matrices = np.zeros((n, 6))

    def apply(self, x: np.ndarray, epoch: int, batch: int) -> np.ndarray:
        """x [n, rows, cols, channels] → the augmented batch (a reused buffer; x is not written)."""
        from trainctl.kernels.augmentation import affine_images

        n = x.shape[0]
        self._ensure(n, x.dtype)
        source = x
        for index, step in enumerate(self.steps):
            rng = rng_for(step.seed if step.seed is not None else self.seed, "augment", index, epoch, batch)
            matrices = self._matrices[:n]
            interpolation = self._matrices_for(step, rng, matrices)
            out = self._buffers[index % 2][:n]
            fill = _FILL[getattr(step, "fill_mode", "constant")]
            affine_images(source, matrices, interpolation, fill, float(getattr(step, "fill_value", 0.0)), out)
            source = out
        return source

    def _matrices_for(self, step: Any, rng: np.random.Generator, m: np.ndarray) -> int:
        """Fill m [n, 6] (output pixel → input position) for `step`; returns the interpolation code."""
        rows, cols = self.image_shape[0], self.image_shape[1]
        cr, cc = (rows - 1) / 2.0, (cols - 1) / 2.0
        n = m.shape[0]
        m[:] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
        if isinstance(step, RandomFlip):
            draws = rng.random((n, 2))
            if step.mode in ("vertical", "horizontal_and_vertical"):
                flip = draws[:, 0] < 0.5
                m[flip, 0], m[flip, 2] = -1.0, rows - 1
            if step.mode in ("horizontal", "horizontal_and_vertical"):
                flip = draws[:, 1] < 0.5
                m[flip, 4], m[flip, 5] = -1.0, cols - 1
            return _INTERPOLATION["nearest"]  # whole pixels: exact
        if isinstance(step, RandomTranslation):
            low, high = factor_range(step.height_factor)
            m[:, 2] = -rng.uniform(low, high, n) * rows  # content moves down by +shift
            low, high = factor_range(step.width_factor)
            m[:, 5] = -rng.uniform(low, high, n) * cols
        elif isinstance(step, RandomRotation):
            low, high = factor_range(step.factor)
            theta = rng.uniform(low, high, n) * 2.0 * math.pi
            cos, sin = np.cos(theta), np.sin(theta)
            m[:, 0], m[:, 1], m[:, 2] = cos, sin, cr - cos * cr - sin * cc
            m[:, 3], m[:, 4], m[:, 5] = -sin, cos, cc + sin * cr - cos * cc
        elif isinstance(step, RandomZoom):
            low, high = factor_range(step.height_factor)
            zoom_rows = 1.0 + rng.uniform(low, high, n)
            if step.width_factor is None:
                zoom_cols = zoom_rows
            else:
                low, high = factor_range(step.width_factor)
                zoom_cols = 1.0 + rng.uniform(low, high, n)
            m[:, 0], m[:, 2] = zoom_rows, cr * (1.0 - zoom_rows)
            m[:, 4], m[:, 5] = zoom_cols, cc * (1.0 - zoom_cols)
        return _INTERPOLATION[step.interpolation]


class AugmentedSource(WrappedSource):
    """A BatchSource whose x batches are augmented (y and sample weights pass through)."""

    def __init__(self, source: Any, augmentation: Augmentation):
        super().__init__(source)
        self.augmentation = augmentation

    def batches(self, epoch: int, batch_size: int, start_batch: int = 0) -> Iterator[tuple]:
        for index, (x, y, weights) in enumerate(self.source.batches(epoch, batch_size, start_batch), start=start_batch):
            yield self.augmentation.apply(x, epoch, index), y, weights
