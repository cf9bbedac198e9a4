"""The general plan's rows for kernels/plan_zoo.py's kinds (DepthwiseConv2D, SeparableConv2D,
Conv2DTranspose, the index copies, Masking), laid out for train/compiled_plans.spatial_plan,
the rows of a model (a channels_first layer's transposes are rows of their own), the masks
those rows pass on and read, and the input values the loop must be able to trust."""

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
    """Per computing row, the row whose mask it reads (-1: none): for a layer that reads one
    (Layer.reads_step_mask: a recurrent layer, Bidirectional), the mask that reaches it as
    Sequential.forward passes masks (Keras semantics; Layer.output_mask_spec tells it from the
    shapes), made by a Masking layer or an Embedding with mask_zero (their keep buffers; the
    model's build refused a mask over more than the steps reaching a reader). A TimeDistributed
    reads none and gives its inner layer none (TimeDistributed.forward): its inner Masking's or
    Embedding's mask goes nowhere, and the mask it received passes on by the default rule."""
    received, mask, made_by = {}, None, {}
    for index, row in enumerate(rows):
        if not row.main:
            continue
        layer = row.layer
        received[index] = made_by[mask.maker] if mask is not None and layer.reads_step_mask else -1
        mask = layer.output_mask_spec(mask)
        if mask is not None and mask.maker == layer.name:
            made_by[layer.name] = index
    return received


def link_masks(rows: list[LayerRow], kinds: np.ndarray, geo: np.ndarray, slots: np.ndarray) -> None:
    """Point each recurrent and Bidirectional row at the keep buffer of the mask it reads
    (received_masks), or at none."""
    from trainctl.kernels import plan_layers as ps
    from trainctl.kernels.recurrent_steps import N_R, R_MASK

    for index, source in received_masks(rows).items():
        live = slots[source, ps.S_AUX] if source >= 0 else -1  # the bufs index of its keep buffer
        if kinds[index] == ps.KIND_RECURRENT:
            geo[index, ps.G_A + R_MASK] = live
        elif kinds[index] == ps.KIND_BIDIRECTIONAL:
            geo[index, ps.G_A + R_MASK] = geo[index, ps.G_A + N_R + R_MASK] = live


def unchecked_values(model) -> str | None:
    """Why the loop cannot trust a layer's input values (an Embedding's indices, inside a
    TimeDistributed too): fit checks them before the first step only where they are the
    model's input (train/compile.input_readers), and the loop's lookup reads them unchecked.
    The Python path raises at the bad index instead."""
    from trainctl.train.compile import input_readers

    readers = input_readers(model)
    for layer in model.layers:
        if layer.checks_input and layer not in readers:
            return f"layer {layer.name} reads values the step computes, which fit cannot check beforehand"
    return None
