"""The general plan's rows for kernels/plan_zoo.py's kinds (DepthwiseConv2D, SeparableConv2D,
Conv2DTranspose, the index copies, Masking), laid out for train/compiled_plans.spatial_plan, the rows
of a model (a channels_first layer's transposes are rows of their own), and the masks those
rows pass on and read."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np


def zoo_layer(plan, row: np.ndarray, sl: np.ndarray, fparams: np.ndarray, slot) -> int:
    """Lay out `plan`'s geometry (row), float options (fparams: its row) and its own buffers
    (sl: its slots; a ProductPlan's weights, z and dz are laid out already); returns its kind,
    0 for none of these."""
    from trainctl.kernels import plan_layers as ps
    from trainctl.kernels.plan_zoo import INDEX_AXES
    from trainctl.nn.layers.plans import ConvTransposePlan, DepthwisePlan, IndexCopyPlan, MaskingPlan

    g = row[ps.G_A:]
    if isinstance(plan, MaskingPlan):
        g[:2] = (plan.positions, plan.width)
        fparams[0] = plan.mask_value
        sl[ps.S_AUX] = slot(plan.keep)
        return ps.KIND_MASKING
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


@dataclass(frozen=True)
class LayerRow:
    """One row of the general plan: the layer it belongs to, the plan it runs, its values per
    sample in and out, and whether it computes the layer (else a channels_first transpose)."""

    layer: Any
    plan: Any
    in_size: int
    out_size: int
    main: bool
    times: int = 1  # inner samples per sample (the sizes are an inner sample's): TimeDistributed's steps

    def __iter__(self):
        return iter((self.layer, self.plan, self.in_size, self.out_size, self.main))


def layer_rows(model, plans) -> list[LayerRow]:
    """Every layer's rows in forward order (nn/layers/plans.plan_rows): a transpose in keeps the
    input's size, a transpose out the output's."""
    from trainctl.nn.layers.plans import RepeatedPlan, main_plan, plan_rows

    rows = []
    for layer, plan in zip(model.layers, plans):
        times = plan.times if isinstance(plan, RepeatedPlan) else 1
        in_size, out_size = math.prod(layer.input_shape) // times, math.prod(layer.output_shape) // times
        parts = plan_rows(plan)
        main = next(k for k, part in enumerate(parts) if part is main_plan(plan))
        for k, part in enumerate(parts):
            rows.append(LayerRow(layer, part, out_size if k > main else in_size, in_size if k < main else out_size,
                                 k == main, times))
    return rows


def received_masks(rows: list[LayerRow]) -> dict[int, int]:
    """Per computing row, the row whose mask it receives (-1: none), as Sequential.forward passes
    masks (Keras semantics): a Masking layer and an Embedding with mask_zero make one (their keep
    buffers), a Bidirectional passes it on with its sequences, a layer with the default
    compute_mask while it keeps the time axis, any other ends it (Embedding without mask_zero:
    the loop runs no other mask-making layer). A TimeDistributed's inner layer (the row's plan)
    receives none (TimeDistributed.forward), and the TimeDistributed passes it on by the default
    rule."""
    from trainctl.nn.layers.base import Layer
    from trainctl.nn.layers.embedding import EmbeddingPlan
    from trainctl.nn.layers.plans import MaskingPlan
    from trainctl.nn.layers.wrappers import Bidirectional, TimeDistributed

    received, live = {}, -1  # live: the row whose mask the next layer receives
    for index, row in enumerate(rows):
        if not row.main:
            continue
        layer, plan = row.layer, row.plan
        received[index] = -1 if isinstance(layer, TimeDistributed) else live
        if isinstance(layer, Bidirectional):  # both copies read it
            live = live if layer.sequences else -1
        elif isinstance(plan, MaskingPlan) or (isinstance(plan, EmbeddingPlan) and plan.keep is not None):
            live = index
        elif type(layer).compute_mask is not Layer.compute_mask:
            live = -1
        elif len(layer.output_shape) < 2 or layer.output_shape[0] != layer.input_shape[0]:
            live = -1
    return received


def link_masks(rows: list[LayerRow], kinds: np.ndarray, geo: np.ndarray, slots: np.ndarray) -> None:
    """Point each recurrent and Bidirectional row at the keep buffer of the mask it receives
    (received_masks), or at none (a Masking layer reads none: it makes its own from its input)."""
    from trainctl.kernels import plan_layers as ps
    from trainctl.kernels.recurrent_steps import N_R, R_MASK

    for index, source in received_masks(rows).items():
        live = slots[source, ps.S_AUX] if source >= 0 else -1  # the bufs index of its keep buffer
        if kinds[index] == ps.KIND_RECURRENT:
            geo[index, ps.G_A + R_MASK] = live
        elif kinds[index] == ps.KIND_BIDIRECTIONAL:
            geo[index, ps.G_A + R_MASK] = geo[index, ps.G_A + N_R + R_MASK] = live


def unreadable_mask(model, plans) -> str | None:
    """Why a layer that reads the mask it receives (a recurrent layer, Bidirectional: one value
    per step) cannot read it: a mask over more than one axis, an Embedding's mask_zero mask over
    [n, steps, ...] (one value per index) or a Masking layer's over [n, steps, a] (one value per
    position of every axis but the last). The loop would read its first values as the steps';
    the Python path raises there (numpy cannot broadcast it into the [n, steps] mask), so such
    a fit trains, and stops, from Python."""
    if not model._masking:
        return None  # no layer makes or ends a mask: none to read (and no mask layer modules to import)
    from trainctl.nn.layers.plans import BidirectionalPlan, MaskingPlan
    from trainctl.nn.layers.recurrent import RecurrentPlan

    rows = layer_rows(model, plans)
    for index, source in received_masks(rows).items():
        reader, maker = rows[index], rows[source]
        if source < 0 or not isinstance(reader.plan, (RecurrentPlan, BidirectionalPlan)):
            continue
        shape = maker.layer.input_shape[:-1] if isinstance(maker.plan, MaskingPlan) else maker.layer.input_shape
        if len(shape) > 1:
            return (f"layer {reader.layer.name} reads a mask over its steps, and receives {maker.layer.name}'s "
                    f"over [{','.join(map(str, shape))}]")
    return None
