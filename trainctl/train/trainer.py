"""The training step: `Trainer` owns a compiled model's per-batch buffers and runs one train
or test step on them (forward ► loss + gradient ► metrics ► backward ► optimizer update).
The fit loop (train/loop.py) and the compiled many-steps loop (train/compiled.py) drive it."""

from __future__ import annotations

import math

import numpy as np

from trainctl.data.source import BatchSource
from trainctl.errors import DataError, TrainctlError
from trainctl.train.compile import last_activation
from trainctl.train.epoch import EpochAccumulator


class Trainer:
    """Owns the per-batch buffers and runs train/test steps for a compiled model."""

    def __init__(self, model):
        if model.loss is None:
            raise TrainctlError("the model must be compiled (optimizer, loss, metrics) before training")
        self.model = model
        self.loss = model.loss
        self.metrics = model.metrics
        self.fused = getattr(self.loss, "fused_activation", None) is not None and \
            last_activation(model) == self.loss.fused_activation and \
            model.layers[-1].output_activation is not None
        self.positions = math.prod(model.output_shape[:-1])  # rows per sample in the 2-D view
        self.regularized = model.has_regularizers
        self.activity_regularized = model.has_activity_regularizers
        self.trainable = model.trainable_weights
        self._capacity = 0
        self._bind_loss_kernels()
        self._scale_key: tuple[int, bool] | None = None

    def _bind_loss_kernels(self, generic: bool = False) -> None:
        """Call the loss kernels directly in the hot loop: the data were checked against the
        model before training, so the per-call argument checks of Loss.compute are skipped.
        The kernel is compiled for this loss only (one formula, not fourteen: kernels/losses.py),
        unless `generic`: the compiled loop's own kernel, already compiled (or loaded) with it,
        which fit's Python-side steps (validation) then share."""
        from trainctl.kernels import losses as kernels
        from trainctl.kernels.steps import batch_loss

        self._batch_loss = batch_loss  # the compiled loop's own: both paths sum the same way
        code = self.loss.code
        if generic:
            step = kernels.loss_forward_backward
            self._loss_only = lambda y2d, out2d, scale, per_row: step(code, y2d, out2d, scale, per_row, out2d, False)
        else:
            rows = kernels.loss_rows_for(code)
            only, with_grad, kind = kernels.LOSS_ONLY, kernels.GRAD_WRT_PRED, np.float64
            self._loss_only = lambda y2d, out2d, scale, per_row: rows(code, y2d, out2d, scale, per_row, out2d, only, kind, False)
        if not self.fused:
            if generic:
                self._loss_and_grad = lambda y2d, out2d, scale, per_row, grad: step(code, y2d, out2d, scale, per_row, grad, True)
            else:
                self._loss_and_grad = lambda y2d, out2d, scale, per_row, grad: rows(code, y2d, out2d, scale, per_row, grad, with_grad, kind, False)
        elif self.loss.fused_activation == "softmax":
            fused = kernels.softmax_crossentropy_backward
            self._loss_and_grad = lambda y2d, out2d, scale, per_row, dz: fused(code, y2d, out2d, scale, per_row, dz)
        else:
            fused = kernels.sigmoid_binary_crossentropy_backward
            self._loss_and_grad = lambda y2d, out2d, scale, per_row, dz: fused(y2d, out2d, scale, per_row, dz)

    @property
    def log_keys(self) -> list[str]:
        return ["loss", *[m.log_key for m in self.metrics]]

    def _ensure(self, batch_size: int) -> None:
        if batch_size > self._capacity:
            self.model.allocate(batch_size)
            rows = batch_size * self.positions
            units = self.model.output_shape[-1]
            dtype = self.model.dtype
            self._per_row = np.empty(rows, dtype)
            self._grad = np.empty((rows, units), dtype)
            self._scale = np.empty(rows, dtype)
            self._capacity = batch_size
            self._scale_key = None

    def _row_scale(self, n: int, weights: np.ndarray | None) -> np.ndarray:
        rows = n * self.positions
        scale = self._scale[:rows]
        if weights is None:
            if self._scale_key != (n, False):
                scale.fill(1.0 / rows)
                self._scale_key = (n, False)
        else:  # no allocation: weights / rows written straight into the buffer
            scale.reshape(n, self.positions)[...] = weights[:, None]
            np.multiply(scale, scale.dtype.type(1.0 / rows), out=scale)
            self._scale_key = None
        return scale

    def _of_model_dtype(self, values: np.ndarray) -> np.ndarray:
        """`values` as the model's float type: a stream's batches are float32 whatever the model
        (a float64 model's kernels would read their memory as float64). Arrays already of it pass as they are."""
        return values if values.dtype == self.model.dtype else values.astype(self.model.dtype)

    def train_batch(self, x: np.ndarray, y: np.ndarray, weights: np.ndarray | None) -> list[float]:
        """One step; returns [loss, *metrics] computed before the update."""
        x, y = self._of_model_dtype(x), self._of_model_dtype(y)
        n = x.shape[0]
        self._ensure(n)
        model = self.model
        out = model.forward(x, training=True)
        out2d = out.reshape(-1, out.shape[-1])
        rows = out2d.shape[0]
        y2d = y.reshape(rows, -1)
        scale = self._row_scale(n, weights)
        per_row, grad = self._per_row[:rows], self._grad[:rows]
        self._loss_and_grad(y2d, out2d, scale, per_row, grad)
        loss_value = float(self._batch_loss(per_row, scale))
        if self.regularized:
            loss_value += model.regularization_loss()
        if self.activity_regularized:
            loss_value += model.activity_loss(n)
        values = [loss_value]
        for metric in self.metrics:
            values.append(metric.compute(y2d, out2d))
        model.backward(grad.reshape(out.shape), through_last_activation=not self.fused)
        if self.regularized:
            for layer in model.layers:
                layer.add_regularization_grads()
        model.optimizer.apply(self.trainable)
        return values

    def test_batch(self, x: np.ndarray, y: np.ndarray, weights: np.ndarray | None) -> list[float]:
        x, y = self._of_model_dtype(x), self._of_model_dtype(y)
        n = x.shape[0]
        self._ensure(n)
        out = self.model.forward(x, training=False)
        out2d = out.reshape(-1, out.shape[-1])
        rows = out2d.shape[0]
        y2d = y.reshape(rows, -1)
        scale = self._row_scale(n, weights)
        per_row = self._per_row[:rows]
        self._loss_only(y2d, out2d, scale, per_row)
        values = [float(self._batch_loss(per_row, scale))]
        for metric in self.metrics:
            values.append(metric.compute(y2d, out2d))
        return values

    def evaluate(self, source: BatchSource, batch_size: int, max_batches: int | None = None) -> dict[str, float]:
        """Size-weighted means of loss and metrics over the source's batches (one pass)."""
        totals = EpochAccumulator(self.log_keys)
        for index, (x, y, weights) in enumerate(source.batches(0, batch_size)):
            if max_batches is not None and index >= max_batches:
                break
            totals.add(self.test_batch(x, y, weights), x.shape[0])
        if totals.seen == 0:
            raise DataError("evaluation data has no samples")
        return totals.means()
