"""Losses by id: `LOSSES.get("categoricalCrossentropy").compute(y_true, y_pred)`.

The 14 losses of tfjs-layers/src/losses.ts under their TF.js ids and aliases (`mse`,
`MSE`, `kld`, `cosine`, ...). Each is a small frozen object naming a kernel code plus
the facts config validation needs (what targets it expects, whether predictions must be
probabilities, which output activation has a fused backward kernel). The math lives in
`trainctl.kernels.losses`, loaded on first use, so importing this module never imports
numba.

Shapes: y_pred is [..., d] and the loss reduces over the last axis, giving one value per
row of the `[rows, d]` view (rows = product of the leading axes). y_true has y_pred's
shape, except for sparse_categorical_crossentropy where it is [..., 1] (or [...]) class
indices. The batch loss is `sum_i row_scale[i] * per_row[i]`; by default
row_scale = 1/rows, i.e. the mean TF.js reports.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from trainctl.errors import DataError
from trainctl.nn.activations import as_rows
from trainctl.kernels import codes
from trainctl.registry import Registry

TargetKind = Literal["one_hot", "sparse_labels", "binary", "signed", "regression"]

# How class labels are encoded for a loss (data `labels: auto`), by its target kind. Binary and
# ±1 losses take 0/1 labels (TF.js maps nothing to -1/1); regression losses take the values.
_LABEL_ENCODING: dict[str, str | None] = {"one_hot": "one_hot", "sparse_labels": "sparse", "binary": "binary",
                                          "signed": "binary", "regression": None}


@dataclass(frozen=True)
class Loss:
    """A loss function over the last axis, with its gradient and the facts about its targets:
    every check of targets or of the model's output against a loss lives here."""

    name: str  # canonical snake_case id
    code: int  # kernel code from trainctl.kernels.codes
    target_kind: TargetKind  # one_hot: rows of class probabilities; sparse_labels: [..., 1] indices;
    # binary: 0/1 per output; signed: -1/1 per output; regression: real values of y_pred's shape
    needs_probabilities: bool  # y_pred must be probabilities (softmax/sigmoid output) to make sense
    fused_activation: str | None  # output activation with a fused loss+activation backward kernel

    @property
    def per_class_output(self) -> bool:
        """The output's last axis holds one softmax unit per class."""
        return self.fused_activation == "softmax"

    @property
    def label_encoding(self) -> str | None:
        """How class labels become targets for this loss: one_hot, sparse, binary, or None."""
        return _LABEL_ENCODING[self.target_kind]

    def check_output(self, units: int, activation: str | None) -> list[str]:
        """Problems of this loss against the model's output (width, last activation)."""
        problems: list[str] = []
        if self.per_class_output and units < 2:
            problems.append(f"{self.name} needs an output with at least 2 units (one per class), the model "
                            f"outputs {units}; use binary_crossentropy for 1 unit" if self.target_kind == "one_hot"
                            else f"{self.name} needs an output with one unit per class, the model outputs {units}")
        if self.needs_probabilities and activation not in (None, "softmax", "sigmoid"):
            problems.append(f"{self.name} expects probabilities, but the last activation is "
                            f"{activation!r}; use softmax (or sigmoid for binary_crossentropy)")
        if self.per_class_output and activation == "sigmoid" and units > 1:
            problems.append(f"{self.name} expects a softmax output, the last activation is sigmoid")
        return problems

    def check_targets(self, y: np.ndarray, out: tuple[int, ...], where: str) -> None:
        """Targets [n, ...] against the model output shape `out` (no batch axis): shape, label
        ranges, one-hot width. DataError naming `where` and the first bad row."""
        if self.target_kind == "sparse_labels":
            expected = (*out[:-1], 1)
            if tuple(y.shape[1:]) not in (expected, tuple(out[:-1])):
                raise DataError(f"{where}: {self.name} needs integer class labels of shape "
                                f"[n,{','.join(map(str, expected))}], got {list(y.shape)}")
            if y.size:
                labels = np.asarray(y)
                low, high = float(labels.min()), float(labels.max())
                if low < 0 or high >= out[-1] or not np.all(labels == np.floor(labels)):
                    flat = labels.reshape(labels.shape[0], -1)
                    bad = (flat < 0) | (flat >= out[-1]) | (flat != np.floor(flat))
                    row = int(np.argmax(bad.any(axis=1)))
                    raise DataError(f"{where}: row {row + 1}: labels must be integers in [0, {out[-1] - 1}] for a "
                                    f"{out[-1]}-unit output, found {float(flat[row][bad[row]][0]):g}")
            return
        if tuple(y.shape[1:]) != tuple(out):
            hint = ""
            if self.target_kind == "one_hot" and y.ndim == 2 and y.shape[1] == 1:
                hint = " (targets look like class labels: use sparse_categorical_crossentropy or one-hot them)"
            raise DataError(f"{where}: targets have shape [n,{','.join(map(str, y.shape[1:]))}] but the model "
                            f"outputs [n,{','.join(map(str, out))}]{hint}")
        if self.target_kind == "binary" and y.size and (float(np.min(y)) < 0 or float(np.max(y)) > 1):
            raise DataError(f"{where}: {self.name} needs targets in [0, 1], found values in "
                            f"[{float(np.min(y)):g}, {float(np.max(y)):g}]")

    def _prepare(self, y_true: np.ndarray, y_pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        y_pred = np.asarray(y_pred)
        if y_pred.dtype not in (np.float32, np.float64):
            raise TypeError(f"{self.name}: y_pred must be float32 or float64, got {y_pred.dtype}")
        pred2d = as_rows(y_pred)
        rows, cols = pred2d.shape
        # Labels may arrive as ints or the other float width; cast once (no copy when they match).
        true = np.ascontiguousarray(y_true, dtype=y_pred.dtype)
        if self.target_kind == "sparse_labels":
            if true.size != rows:
                raise ValueError(
                    f"{self.name}: y_true must hold one class index per row ({rows}), got shape {true.shape}"
                )
            return true.reshape(rows, 1), pred2d
        if true.size != rows * cols:
            raise ValueError(f"{self.name}: y_true shape {true.shape} does not match y_pred shape {y_pred.shape}")
        return true.reshape(rows, cols), pred2d

    @staticmethod
    def _scale(row_scale: np.ndarray | None, rows: int, dtype: np.dtype) -> np.ndarray:
        if row_scale is None:
            return np.full(rows, 1.0 / rows, dtype)
        scale = np.ascontiguousarray(row_scale, dtype=dtype).reshape(-1)
        if scale.shape[0] != rows:
            raise ValueError(f"row_scale has {scale.shape[0]} entries for {rows} rows")
        return scale

    @staticmethod
    def _per_row(per_row: np.ndarray | None, rows: int, dtype: np.dtype) -> np.ndarray:
        if per_row is None:
            return np.empty(rows, dtype)
        if per_row.dtype != dtype or per_row.size != rows or not per_row.flags.c_contiguous:
            raise ValueError(f"per_row must be a contiguous {np.dtype(dtype).name} buffer of {rows} values")
        return per_row.reshape(rows)

    def compute(
        self,
        y_true: np.ndarray,
        y_pred: np.ndarray,
        row_scale: np.ndarray | None = None,
        grad: np.ndarray | None = None,
        per_row: np.ndarray | None = None,
    ) -> np.ndarray:
        """The loss of each row [rows]; fills grad (y_pred's shape) with row_scale * dloss/dy_pred.

        row_scale [rows] defaults to 1/rows. `per_row` is an optional output buffer [rows].
        """
        from trainctl.kernels.losses import GRAD_WRT_PRED, LOSS_ONLY, loss_rows_for

        rows_kernel = loss_rows_for(self.code)  # this loss's formula only (kernels/losses.py)
        true2d, pred2d = self._prepare(y_true, y_pred)
        rows = pred2d.shape[0]
        scale = self._scale(row_scale, rows, pred2d.dtype)
        out = self._per_row(per_row, rows, pred2d.dtype)
        if grad is None:
            rows_kernel(self.code, true2d, pred2d, scale, out, pred2d, LOSS_ONLY, np.float64, False)
        else:
            if grad.dtype != pred2d.dtype:
                raise TypeError(f"{self.name}: grad dtype {grad.dtype} differs from y_pred dtype {pred2d.dtype}")
            grad2d = as_rows(grad, writable=True)
            if grad2d.shape != pred2d.shape:
                raise ValueError(f"{self.name}: grad shape {grad.shape} does not match y_pred {y_pred.shape}")
            if np.may_share_memory(grad2d, pred2d):
                raise ValueError(f"{self.name}: grad must not share memory with y_pred")
            rows_kernel(self.code, true2d, pred2d, scale, out, grad2d, GRAD_WRT_PRED, np.float64, False)
        return out

    def fused_backward(
        self,
        y_true: np.ndarray,
        probs: np.ndarray,
        row_scale: np.ndarray | None,
        per_row: np.ndarray | None,
        dz: np.ndarray,
    ) -> np.ndarray:
        """Loss per row [rows]; dz = row_scale * dloss/dlogits through the fused output activation.

        probs is the activation's output ([..., d]); dz has its shape and may be probs.
        """
        if self.fused_activation is None:
            raise ValueError(f"{self.name} has no fused output-activation kernel")
        from trainctl.kernels import losses as kernels

        true2d, probs2d = self._prepare(y_true, probs)
        rows = probs2d.shape[0]
        scale = self._scale(row_scale, rows, probs2d.dtype)
        out = self._per_row(per_row, rows, probs2d.dtype)
        if dz.dtype != probs2d.dtype:
            raise TypeError(f"{self.name}: dz dtype {dz.dtype} differs from probs dtype {probs2d.dtype}")
        dz2d = as_rows(dz, writable=True)
        if dz2d.shape != probs2d.shape:
            raise ValueError(f"{self.name}: dz shape {dz.shape} does not match probs {probs.shape}")
        if self.fused_activation == "softmax":
            kernels.softmax_crossentropy_backward(self.code, true2d, probs2d, scale, out, dz2d)
        else:
            kernels.sigmoid_binary_crossentropy_backward(true2d, probs2d, scale, out, dz2d)
        return out

    def batch_loss(self, y_true: np.ndarray, y_pred: np.ndarray, sample_weight: np.ndarray | None = None) -> float:
        """The TF.js batch loss: mean over rows, or the sample-weighted mean sum(w * loss) / rows."""
        per_row = self.compute(y_true, y_pred)
        if sample_weight is None:
            return float(per_row.mean())
        per_sample_rows = per_row.size // np.asarray(y_pred).shape[0]
        weights = np.repeat(np.asarray(sample_weight, dtype=np.float64).reshape(-1), per_sample_rows)
        return float(np.dot(per_row.astype(np.float64), weights) / per_row.size)


LOSSES: Registry[Loss] = Registry("loss")


def _register(name: str, aliases: tuple[str, ...], target_kind: TargetKind, needs_probabilities: bool = False,
              fused_activation: str | None = None) -> None:
    LOSSES.register(name, *aliases)(
        Loss(name, codes.LOSS_CODES[name], target_kind, needs_probabilities, fused_activation)
    )


# TF.js camelCase ids (meanSquaredError, ...) resolve through snake_case; these are the rest.
_register("mean_squared_error", ("mse", "MSE"), "regression")
_register("mean_absolute_error", ("mae", "MAE"), "regression")
_register("mean_absolute_percentage_error", ("mape", "MAPE"), "regression")
_register("mean_squared_logarithmic_error", ("msle", "MSLE"), "regression")
_register("squared_hinge", (), "signed")  # TF.js does not map 0/1 labels to -1/1: pass -1/1
_register("hinge", (), "signed")
_register("categorical_hinge", (), "one_hot")
_register("logcosh", ("log_cosh",), "regression")  # Keras 3 spells it log_cosh
_register("categorical_crossentropy", (), "one_hot", True, "softmax")
_register("sparse_categorical_crossentropy", (), "sparse_labels", True, "softmax")
_register("binary_crossentropy", (), "binary", True, "sigmoid")
_register("kullback_leibler_divergence", ("kld", "KLD", "kl_divergence"), "one_hot", True)  # rows of probabilities
_register("poisson", (), "regression")
_register("cosine_proximity", ("cosine", "cosine_similarity"), "regression")
