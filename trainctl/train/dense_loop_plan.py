"""The dense loop's plan (kernels/plan_steps.train_plan_steps): Dense and Dropout layers
over [rows, features], each layer's buffers in numba typed lists."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from trainctl.train.plan_weights import regularizer_rows, typed_list


@dataclass
class DenseLoopPlan:
    kinds: np.ndarray
    kernels: Any
    biases: Any
    kernel_grads: Any
    bias_grads: Any
    zs: Any
    ys: Any
    dzs: Any
    dxs: Any
    codes: np.ndarray
    ys_flat: Any
    dxs_flat: Any
    masks: Any
    uniforms: Any
    rates: np.ndarray
    features: np.ndarray
    offsets: np.ndarray
    dropouts: list  # (layer index, DropoutPlan, its draws per sample) in forward order
    regularized: bool
    reg_which: np.ndarray
    reg_rates: np.ndarray
    reg_grad_rates: np.ndarray


def dense_plan(steps, plans) -> DenseLoopPlan:
    """The plan of train_plan_steps: Dense and Dropout layers over [rows, features]."""
    from trainctl.kernels import plan_steps
    from trainctl.nn.layers.base import DensePlan

    trainer, dtype = steps.trainer, steps.dtype
    model = trainer.model
    none2, none1, none_u = np.zeros((0, 0), dtype), np.zeros(0, dtype), np.zeros(0, np.float64)
    kinds, rows = [], []
    dropouts = []
    for index, plan in enumerate(plans):
        if isinstance(plan, DensePlan):
            kinds.append(plan_steps.KIND_DENSE)
            rows.append({"kernel": plan.kernel, "bias": plan.bias, "kernel_grad": plan.kernel_grad,
                         "bias_grad": plan.bias_grad, "z": plan.z, "y": plan.y, "dz": plan.dz, "dx": plan.dx,
                         "code": plan.activation_code, "y_flat": plan.y.reshape(-1),
                         "dx_flat": plan.dx.reshape(-1), "mask": none1, "rate": 0.0,
                         "features": plan.y.shape[1]})
        else:  # a DropoutPlan: 2-D views of its 1-D buffers for the layers around it
            kinds.append(plan_steps.KIND_DROPOUT)
            dropouts.append((index, plan, plan.features))
            capacity = plan.y.shape[0] // plan.features
            rows.append({"kernel": none2, "bias": none1, "kernel_grad": none2, "bias_grad": none1,
                         "z": none2, "y": plan.y.reshape(capacity, plan.features), "dz": none2,
                         "dx": plan.dx.reshape(capacity, plan.features), "code": 0, "y_flat": plan.y,
                         "dx_flat": plan.dx, "mask": plan.mask, "rate": plan.rate, "features": plan.features})
    regularizers = regularizer_rows(model, plans, dtype)
    return DenseLoopPlan(np.array(kinds, np.int64), *(typed_list([r[k] for r in rows]) for k in (
        "kernel", "bias", "kernel_grad", "bias_grad", "z", "y", "dz", "dx")),
        np.array([r["code"] for r in rows], np.int64),
        typed_list([r["y_flat"] for r in rows]), typed_list([r["dx_flat"] for r in rows]),
        typed_list([r["mask"] for r in rows]), typed_list([none_u for _ in rows]),
        np.array([r["rate"] for r in rows], np.float64), np.array([r["features"] for r in rows], np.int64),
        np.zeros(len(rows), np.int64), dropouts, trainer.regularized, *regularizers)
