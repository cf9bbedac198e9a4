"""The general plan's rows for kernels/plan_zoo.py's kinds (DepthwiseConv2D, SeparableConv2D,
Conv2DTranspose, the index copies), laid out for train/compiled_plans.spatial_plan."""

from __future__ import annotations

import numpy as np


def zoo_layer(plan, row: np.ndarray, sl: np.ndarray, slot) -> int:
    """Lay out `plan`'s geometry (row) and its own buffers (sl: its slots; a ProductPlan's
    weights, z and dz are laid out already); returns its kind, 0 for none of these."""
    from trainctl.kernels import plan_layers as ps
    from trainctl.kernels.plan_zoo import INDEX_AXES
    from trainctl.nn.layers.plans import ConvTransposePlan, DepthwisePlan, IndexCopyPlan

    g = row[ps.G_A:]
    if isinstance(plan, IndexCopyPlan):
        g[:2 * INDEX_AXES] = (*plan.dims, *plan.strides)
        return ps.KIND_INDEX_COPY
    if isinstance(plan, DepthwisePlan):
        g[:16] = (*plan.in4, plan.y.shape[-1], *plan.geometry, *plan.out_hw, plan.multiplier, int(plan.separable))
        sl[ps.S_AUX], sl[ps.S_AUX + 1] = slot(plan.pointwise), slot(plan.pointwise_grad)
        sl[ps.S_AUX + 2], sl[ps.S_AUX + 3] = slot(plan.mid), slot(plan.dmid)
        return ps.KIND_DEPTHWISE
    if isinstance(plan, ConvTransposePlan):
        g[:14] = (*plan.in3, plan.y.shape[-1], *plan.geometry, *plan.out_hw)
        sl[ps.S_AUX] = slot(plan.cols)
        return ps.KIND_CONV_TRANSPOSE
    return 0


def zoo_weights(plan) -> list[tuple[np.ndarray, np.ndarray]]:
    """The (value, grad) pairs a plan of these kinds holds beyond a ProductPlan's kernel and bias."""
    from trainctl.nn.layers.plans import DepthwisePlan

    if isinstance(plan, DepthwisePlan) and plan.separable:
        return [(plan.pointwise, plan.pointwise_grad)]
    return []
