"""Class labels: how they become targets (one-hot, sparse indices, one 0/1 column), decided by
the `labels` option and the loss; text labels mapped to indices in a fixed class order."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from trainctl.data import RawData

import numpy as np

from trainctl.data.preprocessing import one_hot
from trainctl.errors import DataError


def index_labels(labels: np.ndarray, class_names: list[str] | None, shown: str) -> tuple[np.ndarray, list[str]]:
    """String labels [n] → int64 indices [n] and the class names (sorted, unless given)."""
    unique, inverse = np.unique(labels, return_inverse=True)
    if class_names is None:
        return inverse.astype(np.int64), [str(u) for u in unique]
    lookup = {name: i for i, name in enumerate(class_names)}
    missing = [str(u) for u in unique if str(u) not in lookup]
    if missing:
        row = int(np.flatnonzero(labels == missing[0])[0]) + 1
        raise DataError(f"{shown}: row {row}: class {missing[0]!r} is not one of the classes {class_names}")
    mapping = np.array([lookup[str(u)] for u in unique], dtype=np.int64)
    return mapping[inverse], list(class_names)


def label_encoding(labels_option: str, loss: str | None, n_classes: int | None, natural_classes: bool, has_one_hot_step: bool) -> str:
    """How class labels become y: one_hot | sparse | binary | none (raw numeric targets)."""
    loss_encoding = _loss_label_encoding(loss)
    if labels_option == "none":
        return "none"
    if has_one_hot_step:
        return "sparse"  # the one_hot step expands the index column
    if labels_option != "auto":
        return labels_option
    if not natural_classes and loss_encoding not in ("sparse", "one_hot"):
        return "none"
    if loss_encoding in ("sparse", "one_hot"):
        return loss_encoding
    return "binary" if n_classes == 2 else "one_hot"


def _loss_label_encoding(loss: Any) -> str | None:
    """The label encoding the loss declares (Loss.label_encoding); None for an unknown id."""
    from trainctl.nn.losses import LOSSES

    if isinstance(loss, str) and loss in LOSSES:
        return LOSSES.get(loss).label_encoding
    return getattr(loss, "label_encoding", None)


def _classes_from_numeric(targets: np.ndarray, class_names: list[str] | None, shown: str) -> tuple[np.ndarray, int, list[str]]:
    if targets.shape[1] != 1:
        raise DataError(f"{shown}: class labels need one target column, got {targets.shape[1]}")
    values = np.asarray(targets[:, 0])
    as_int = values.astype(np.int64)
    bad = np.flatnonzero((as_int != values) | (as_int < 0))
    if bad.size:
        raise DataError(f"{shown}: row {int(bad[0]) + 1}: target {values[bad[0]]:g} is not a class index (a whole number ≥ 0)")
    n_classes = len(class_names) if class_names else int(as_int.max()) + 1
    if as_int.max() >= n_classes:
        row = int(np.flatnonzero(as_int >= n_classes)[0]) + 1
        raise DataError(f"{shown}: row {row}: class index {as_int[row - 1]} out of range for {n_classes} classes")
    return as_int, n_classes, class_names or [str(i) for i in range(n_classes)]


def encode_targets(raw: "RawData", encoding: str, n_classes: int | None, class_names: list[str] | None) -> tuple[np.ndarray | None, int | None, list[str] | None]:
    """(y float32, n_classes, class_names) for `raw` under `encoding`."""
    if raw.labels is None and raw.targets is None:
        return None, None, None
    if encoding == "none":
        if raw.labels is not None:
            if raw.targets is None and raw.class_names and not all(c.isdigit() for c in raw.class_names):
                raise DataError(f"{raw.description}: text class labels cannot be used as numeric targets (labels: none)")
            return raw.labels.astype(np.float32)[:, None], raw.n_classes, raw.class_names
        return raw.targets, None, None
    if raw.labels is None and encoding == "one_hot" and raw.targets.ndim == 2 and raw.targets.shape[1] > 1:
        # already one-hot (the usual TF.js form): keep it; the model check compares widths
        width = raw.targets.shape[1]
        return raw.targets.astype(np.float32, copy=False), width, class_names or [str(i) for i in range(width)]
    if raw.labels is not None:
        indices, k, names = raw.labels, n_classes or raw.n_classes, class_names or raw.class_names
        if k is not None and indices.size and indices.max() >= k:
            raise DataError(f"{raw.description}: class index {int(indices.max())} out of range for {k} classes")
    else:
        indices, k, names = _classes_from_numeric(raw.targets, class_names, raw.description)
        k = n_classes or k
    if encoding == "one_hot":
        return one_hot(indices, k, raw.description), k, names
    if encoding == "binary" and k != 2:
        raise DataError(f"{raw.description}: labels: binary needs 2 classes, found {k}")
    return indices.astype(np.float32)[:, None], k, names
