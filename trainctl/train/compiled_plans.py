"""The general plan the compiled training loops run (kernels/plan_layers.py,
general_plan_steps.py), built from the layers' `compiled_plan()` records: per layer its kind,
its buffers as flat views in numba typed lists and its geometry as int rows, and per
regularized weight where the plan holds it. train/compiled.py chooses the loop and runs it;
this module only lays out its arguments. The dense loop's plan is dense_loop_plan.py's, the
weights a plan holds plan_weights.py's (both re-exported here for train/compiled.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from trainctl.train.dense_loop_plan import DenseLoopPlan, dense_plan
from trainctl.train.plan_weights import (
    activity_held,
    regularized_pairs,
    regularized_weights_held,
    typed_list,
    weight_bounds,
)

__all__ = ["DenseLoopPlan", "SpatialLoopPlan", "activity_held", "dense_plan", "has_sequence_layers",
           "regularized_weights_held", "spatial_plan", "weight_bounds"]


@dataclass
class SpatialLoopPlan:
    """The general plan (see kernels/plan_layers.py and general_plan_steps.py)."""

    kinds: np.ndarray
    geo: np.ndarray
    fparams: np.ndarray
    codes: np.ndarray  # the activation forward
    back_codes: np.ndarray  # and backward (linear, or -1 for an Activation: fused into the loss)
    x_slots: np.ndarray
    dy_slots: np.ndarray
    need_dx: np.ndarray
    out_slot: int
    bufs: Any
    slots: np.ndarray
    wide: Any
    wide_slots: np.ndarray
    ints: Any
    int_slots: np.ndarray
    uniforms: Any
    normals: Any  # the noise layers' standard-normal draws of the chunk (the model's dtype)
    offsets: np.ndarray
    # (its uniforms / normals entry, DropoutPlan, NoisePlan or DrawsPlan, its draws per sample of the
    # batch) in forward order; the draws are its features, times the steps of a TimeDistributed row
    dropouts: list
    regularized: bool
    reg_slots: np.ndarray
    reg_grad_slots: np.ndarray
    reg_rates: np.ndarray
    reg_grad_rates: np.ndarray
    activity: bool  # some layer has an activity regularizer
    act_slots: np.ndarray  # per layer the bufs index of its activity-grad buffer, or -1
    act_rates: np.ndarray  # [layer, (l1, l2)] float64: the penalty's
    act_grad_rates: np.ndarray  # [layer, (l1, 2 * l2, 1 / the row's samples)] in the model's dtype: the gradient's
    sequences: bool = False  # a recurrent or Embedding layer: train_sequence_plan_steps runs it


def has_sequence_layers(plans) -> bool:
    """Whether some plan is a recurrent layer's, a Bidirectional's or an Embedding's (the
    sequence loop's kinds), a TimeDistributed's inner one's too."""
    from trainctl.nn.layers.embedding import EmbeddingPlan
    from trainctl.nn.layers.plans import BidirectionalPlan, main_plan
    from trainctl.nn.layers.recurrent import RecurrentPlan

    return any(isinstance(main_plan(plan), (RecurrentPlan, BidirectionalPlan, EmbeddingPlan)) for plan in plans)


def _sequence_layer(plan, row, sl, bufs, slot, dtype) -> bool:
    """Lay out a recurrent layer's, a Bidirectional's or an Embedding's row of the general plan;
    returns its kind (False: none of these). A Bidirectional's BI_DRAWS column is spatial_plan's."""
    from trainctl.kernels import bidirectional_steps as bs
    from trainctl.kernels import plan_layers as ps
    from trainctl.kernels import recurrent_steps as rs
    from trainctl.nn.layers.embedding import EmbeddingPlan
    from trainctl.nn.layers.plans import BidirectionalPlan
    from trainctl.nn.layers.recurrent import RecurrentPlan

    if isinstance(plan, EmbeddingPlan):
        row[ps.G_A], row[ps.G_A + 1] = plan.output_dim, int(plan.keep is not None)
        sl[ps.S_W0], sl[ps.S_W0_GRAD] = slot(plan.embeddings), slot(plan.embeddings_grad)
        if plan.keep is not None:  # mask_zero: the mask it makes (link_masks)
            sl[ps.S_AUX] = slot(plan.keep)
        return ps.KIND_EMBEDDING
    if isinstance(plan, RecurrentPlan):
        _recurrent_block(plan, row[ps.G_A:ps.G_A + rs.N_R], bufs, dtype)
        return ps.KIND_RECURRENT
    if not isinstance(plan, BidirectionalPlan):
        return False
    _recurrent_block(plan.forward, row[ps.G_A:ps.G_A + rs.N_R], bufs, dtype)
    _recurrent_block(plan.backward, row[ps.G_A + rs.N_R:ps.G_A + 2 * rs.N_R], bufs, dtype)
    row[ps.G_A + bs.BI_MODE] = bs.MERGE_MODES.index(plan.merge_mode)
    sl[ps.S_AUX], sl[ps.S_AUX + 1], sl[ps.S_AUX + 2] = slot(plan.dy_forward), slot(plan.dy_backward), slot(plan.half)
    return ps.KIND_BIDIRECTIONAL


def _recurrent_block(plan, r, bufs, dtype) -> None:
    """A recurrent layer's buffers as one block of consecutive entries of bufs, in
    recurrent_steps.BLOCK's order, and its R_* row r (R_MASK: link_masks)."""
    from trainctl.kernels import recurrent_steps as rs

    base, empty = len(bufs), np.zeros(0, dtype)
    for name in rs.BLOCK:
        array = plan.buffers.get(name, empty)
        if not array.flags.c_contiguous:
            raise AssertionError("a plan buffer must be C-contiguous (the loop writes its flat view)")
        bufs.append(array.reshape(-1))
    r[rs.R_CELL], r[rs.R_STEPS], r[rs.R_FEATURES], r[rs.R_UNITS] = plan.cell, plan.steps, plan.features, plan.units
    r[rs.R_SEQUENCES], r[rs.R_BACKWARDS], r[rs.R_BLOCK] = int(plan.return_sequences), int(plan.go_backwards), base
    # the pair's time loops (compiled or loaded now, as the Python path would), or 0: the defaults
    r[rs.R_FORWARD_AT], r[rs.R_BACKWARD_AT] = rs.time_loop_addresses(plan.cell, *plan.activations, dtype)


def spatial_plan(steps, plans) -> SpatialLoopPlan:
    """Every layer's buffers as flat views in typed lists, its geometry as int rows."""
    from trainctl.kernels import plan_layers as ps
    from trainctl.kernels.bidirectional_steps import BI_DRAWS
    from trainctl.kernels.steps import LOSS_GENERIC
    from trainctl.nn.layers.base import DensePlan, DropoutPlan, ProductPlan
    from trainctl.nn.layers.plans import (
        ActivationPlan,
        BatchNormPlan,
        ConvPlan,
        CopyBoxPlan,
        ElementwisePlan,
        GlobalPoolPlan,
        LayerNormPlan,
        NoisePlan,
        PoolPlan,
        PReLUPlan,
        SoftmaxPlan,
        UpsamplePlan,
        ViewPlan,
    )

    from trainctl.train.compiled_zoo import layer_rows, link_masks, zoo_layer

    trainer, dtype = steps.trainer, steps.dtype
    model = trainer.model
    bufs = [steps.x_buf.reshape(-1), trainer._grad.reshape(-1), np.zeros(0, dtype)]  # 0: input, 1: dLoss, 2: none
    wide, ints = [np.zeros(0, np.float64)], [np.zeros(0, np.int64)]
    where: dict[tuple[int, int], int] = {}

    def slot(array: np.ndarray, store=bufs) -> int:
        if not array.flags.c_contiguous:
            raise AssertionError("a plan buffer must be C-contiguous (the loop writes its flat view)")
        key = (array.__array_interface__["data"][0], array.size)
        if store is bufs and key in where:
            return where[key]
        store.append(array.reshape(-1))
        if store is bufs:
            where[key] = len(bufs) - 1
        return len(store) - 1

    rows = layer_rows(model, plans)  # a channels_first layer takes its transposes' rows too
    n = len(rows)
    kinds = np.full(n, ps.KIND_VIEW, np.int64)
    geo = np.zeros((n, ps.N_GEO), np.int64)
    fparams = np.zeros((n, ps.N_FPARAMS), np.float64)
    codes, back_codes = np.zeros(n, np.int64), np.zeros(n, np.int64)
    slots = np.full((n, ps.N_SLOTS), 2, np.int64)
    wide_slots = np.zeros((n, 2), np.int64)
    int_slots = np.zeros(n, np.int64)
    dropouts = []
    extra_draws: list[int] = []  # uniforms / offsets entries past the rows (Bidirectional's backward copies)
    last = max(index for index, row in enumerate(rows) if row.main)  # the last layer's computing row
    fused = steps.loss_mode != LOSS_GENERIC
    for index, (layer, plan, in_size, out_size, _) in enumerate(rows):
        row, sl = geo[index], slots[index]
        times = rows[index].times
        row[ps.G_IN], row[ps.G_OUT], row[ps.G_TIMES] = in_size, out_size, times
        if isinstance(plan, ViewPlan) or (isinstance(plan, DropoutPlan) and plan.rate == 0.0):
            if isinstance(plan, DropoutPlan):  # rate 0: Dropout.forward passes x on, draws nothing
                dropouts.append((index, plan, plan.features * times))
            continue
        sl[ps.S_Y], sl[ps.S_DX] = slot(plan.y), slot(plan.dx)
        if isinstance(plan, ProductPlan):  # Dense, the convolutions
            kinds[index] = ps.KIND_DENSE if isinstance(plan, DensePlan) else ps.KIND_CONV
            sl[ps.S_Z], sl[ps.S_DZ] = slot(plan.z), slot(plan.dz)
            sl[ps.S_W0], sl[ps.S_W0_GRAD] = slot(plan.kernel), slot(plan.kernel_grad)
            sl[ps.S_W1], sl[ps.S_W1_GRAD] = slot(plan.bias), slot(plan.bias_grad)
            codes[index] = plan.activation_code
            back_codes[index] = steps.linear_code if (index == last and fused) else plan.activation_code
            if isinstance(plan, DensePlan):
                row[ps.G_A:ps.G_A + 2] = plan.kernel.shape
            elif not isinstance(plan, ConvPlan):  # kernels/plan_zoo.py's
                kinds[index] = zoo_layer(plan, row, sl, fparams[index], slot)
            else:
                row[ps.G_A:ps.G_A + 4] = (*plan.in4, plan.kernel.shape[-1])
                row[ps.G_A + 4:ps.G_A + 16] = plan.geometry
                sl[ps.S_AUX], sl[ps.S_AUX + 1], sl[ps.S_AUX + 2] = \
                    slot(plan.cols), slot(plan.dcols), slot(plan.kernel_part)
        elif isinstance(plan, DropoutPlan):
            kinds[index] = ps.KIND_DROPOUT
            dropouts.append((index, plan, plan.features * times))
            sl[ps.S_AUX] = slot(plan.mask)
            fparams[index, 0] = plan.rate
        elif isinstance(plan, ActivationPlan):
            kinds[index] = ps.KIND_ACTIVATION
            row[ps.G_A] = plan.y.shape[1]
            codes[index] = plan.activation_code
            back_codes[index] = -1 if (index == last and fused) else plan.activation_code
        elif isinstance(plan, PoolPlan):
            kinds[index] = ps.KIND_MAX_POOL if plan.is_max else ps.KIND_AVG_POOL
            row[ps.G_A:ps.G_A + 3] = plan.in4
            row[ps.G_A + 3:ps.G_A + 9] = plan.geometry
            row[ps.G_A + 9:ps.G_A + 11] = plan.y.shape[1:3]
            if plan.is_max:
                int_slots[index] = slot(plan.argmax, ints)
        elif isinstance(plan, GlobalPoolPlan):
            kinds[index] = ps.KIND_GLOBAL_POOL
            row[ps.G_A:ps.G_A + 3] = (plan.positions, plan.channels, int(plan.is_max))
        elif isinstance(plan, BatchNormPlan):
            kinds[index] = ps.KIND_BATCH_NORM
            row[ps.G_A:ps.G_A + 3] = (plan.pre, plan.k, plan.post)
            fparams[index, :2] = (plan.epsilon, plan.decay)
            sl[ps.S_W0], sl[ps.S_W0_GRAD] = slot(plan.gamma), slot(plan.gamma_grad)
            sl[ps.S_W1], sl[ps.S_W1_GRAD] = slot(plan.beta), slot(plan.beta_grad)
            for k, array in enumerate((plan.moving_mean, plan.moving_variance, plan.batch_mean,
                                       plan.batch_variance, plan.inv_std, plan.xhat)):
                sl[ps.S_AUX + k] = slot(array)
            wide_slots[index] = (slot(plan.sums, wide), slot(plan.squares, wide))
        elif isinstance(plan, ElementwisePlan):
            kinds[index] = ps.KIND_ELEMENTWISE
            row[ps.G_A] = plan.op
            fparams[index, :len(plan.options)] = plan.options
        elif isinstance(plan, SoftmaxPlan):
            kinds[index] = ps.KIND_SOFTMAX
            row[ps.G_A:ps.G_A + 3] = (plan.pre, plan.k, plan.post)
            fparams[index, 0] = -1.0 if (index == last and fused) else 0.0  # fused: dx is dy
        elif isinstance(plan, LayerNormPlan):
            kinds[index] = ps.KIND_LAYER_NORM
            row[ps.G_A:ps.G_A + 3] = (plan.pre, plan.k, plan.post)
            fparams[index, 0] = plan.epsilon
            sl[ps.S_W0], sl[ps.S_W0_GRAD] = slot(plan.gamma), slot(plan.gamma_grad)
            sl[ps.S_W1], sl[ps.S_W1_GRAD] = slot(plan.beta), slot(plan.beta_grad)
            sl[ps.S_AUX], sl[ps.S_AUX + 1] = slot(plan.inv_std), slot(plan.xhat)
            wide_slots[index] = (slot(plan.sums, wide), slot(plan.squares, wide))
        elif isinstance(plan, PReLUPlan):
            kinds[index] = ps.KIND_PRELU
            row[ps.G_A] = plan.positions
            sl[ps.S_W0], sl[ps.S_W0_GRAD] = slot(plan.alpha), slot(plan.alpha_grad)
            int_slots[index] = slot(plan.index, ints)
            wide_slots[index, 0] = slot(plan.acc, wide)
        elif isinstance(plan, UpsamplePlan):
            kinds[index] = ps.KIND_UPSAMPLE
            row[ps.G_A:ps.G_A + 6] = (*plan.in4, *plan.factors, int(bool(plan.tables)))
            if plan.tables:  # bilinear: the int tables end to end, the fractions in the model's dtype
                top, bottom, row_frac, left, right, col_frac = plan.tables
                int_slots[index] = slot(np.concatenate([top, bottom, left, right]), ints)
                sl[ps.S_AUX], sl[ps.S_AUX + 1] = slot(row_frac), slot(col_frac)
        elif isinstance(plan, CopyBoxPlan):
            kinds[index] = ps.KIND_COPY_BOX
            row[ps.G_A:ps.G_A + 15] = (*plan.in3, *plan.out3, *plan.x_start, *plan.y_start, *plan.extent)
        elif isinstance(plan, NoisePlan):
            kinds[index] = ps.KIND_NOISE
            dropouts.append((index, plan, plan.features * times))
            row[ps.G_A:ps.G_A + 4] = (plan.op, plan.channels, int(plan.channels_last), plan.features)
            fparams[index, :len(plan.options)] = plan.options
            sl[ps.S_AUX] = slot(plan.mask)
        else:
            kinds[index] = zoo_layer(plan, row, sl, fparams[index], slot) or _sequence_layer(plan, row, sl, bufs, slot, dtype)
            if kinds[index] == ps.KIND_RECURRENT:  # its dropout rates, and its draws as a dropout's
                fparams[index, :2] = plan.rates
                if plan.draws is not None:
                    dropouts.append((index, plan.draws, plan.draws.features * times))
            elif kinds[index] == ps.KIND_BIDIRECTIONAL:  # the copies' rates (one spec), each copy's draws
                fparams[index, :2] = plan.forward.rates
                back = n + len(extra_draws)  # the backward copy's own generator: a uniforms entry past the rows
                row[ps.G_A + BI_DRAWS] = back
                extra_draws.append(back)
                for at, copy in ((index, plan.forward), (back, plan.backward)):
                    if copy.draws is not None:
                        dropouts.append((at, copy.draws, copy.draws.features * times))
            if not kinds[index]:
                raise AssertionError(f"{layer.name}: no compiled kind for {type(plan).__name__}")
    link_masks(rows, kinds, geo, slots)  # Masking's mask to the recurrent layers after it
    # what each layer reads: forward the output of the computing layer before it (or the
    # input), backward the dx of the computing layer after it (or dLoss); views pass through
    x_slots, dy_slots = np.zeros(n, np.int64), np.ones(n, np.int64)
    need_dx = np.zeros(n, np.bool_)
    current, computed = 0, False
    for index in range(n):
        x_slots[index], need_dx[index] = current, computed
        if kinds[index] != ps.KIND_VIEW:  # (a layer's transpose in needs a dx only if the layer does)
            current, computed = slots[index, ps.S_Y], computed or rows[index].main
    out_slot = int(current)
    current = 1
    for index in range(n - 1, -1, -1):
        dy_slots[index] = current
        if kinds[index] != ps.KIND_VIEW:
            current = slots[index, ps.S_DX]
    # weight regularizers, per layer in weight order (as Layer.regularization_loss sums them)
    pairs = [regularized_pairs(layer, plan) if main else [] for layer, plan, _, _, main in rows]
    most = max([2] + [len(layer_pairs) for layer_pairs in pairs])  # a Bidirectional's copies: up to 6
    reg_slots = np.full((n, most), -1, np.int64)
    reg_grad_slots = np.full((n, most), -1, np.int64)
    reg_rates = np.zeros((n, most, 2), np.float64)
    reg_grad_rates = np.zeros((n, most, 2), dtype)
    for index, layer_pairs in enumerate(pairs):
        for r, (regularizer, (value, grad)) in enumerate(layer_pairs):
            reg_slots[index, r], reg_grad_slots[index, r] = slot(value), slot(grad)
            reg_rates[index, r] = (regularizer.l1, regularizer.l2)
            reg_grad_rates[index, r] = (dtype.type(regularizer.l1), dtype.type(2.0 * regularizer.l2))
    # activity regularizers (Dense, conv): penalty(y) / the row's samples joins the loss, its grad dLoss/dy
    act_slots = np.full(n, -1, np.int64)
    act_rates = np.zeros((n, 2), np.float64)
    act_grad_rates = np.zeros((n, 3), dtype)
    for index, (_, plan, _, _, _) in enumerate(rows):
        regularizer = plan.activity_regularizer if isinstance(plan, ProductPlan) else None
        if regularizer is not None:
            act_slots[index] = slot(plan.activity_grad)
            act_rates[index] = (regularizer.l1, regularizer.l2)
            act_grad_rates[index, :2] = (dtype.type(regularizer.l1), dtype.type(2.0 * regularizer.l2))
    none_u, draw_rows = np.zeros(0, np.float64), n + len(extra_draws)
    return SpatialLoopPlan(kinds, geo, fparams, codes, back_codes, x_slots, dy_slots, need_dx, out_slot, typed_list(bufs), slots,
                        typed_list(wide), wide_slots, typed_list(ints), int_slots, typed_list([none_u] * draw_rows),
                        typed_list([np.zeros(0, dtype)] * n), np.zeros(draw_rows, np.int64), dropouts, trainer.regularized, reg_slots, reg_grad_slots,
                        reg_rates, reg_grad_rates, bool((act_slots >= 0).any()), act_slots, act_rates,
                        act_grad_rates, has_sequence_layers(plans))
