"""The general plan's training loop (conv, pooling, normalization, the element-wise and noise
layers, views, recurrent and Embedding layers, Dense of any rank): many steps in one compiled
call, each exactly Trainer.train_batch, built from the pieces kernels/plan_steps.py shares with
the dense loop and the per-layer dispatch of kernels/plan_layers.py.
"""

from __future__ import annotations

from trainctl.jit import njit
from trainctl.kernels.layers import add_activity_grad
from trainctl.kernels.optimizers import l1l2_add_grad
from trainctl.kernels.plan_layers import (
    G_IN,
    G_OUT,
    G_TIMES,
    KIND_VIEW,
    S_Y,
    _activity_penalties,
    _penalties,
    _sequence_backward,
    _sequence_forward,
    _spatial_backward,
    _spatial_forward,
)
from trainctl.kernels.plan_steps import end_step, next_batch, record_step, step_loss


def _general_plan_steps(sequences: bool):
    """The general plan's loop, made twice: with the recurrent and Embedding kinds (`sequences`)
    and without. numba links and re-optimises every function a kernel can reach, so one loop for
    all kinds made a conv model's first compile pay for the recurrent time loops too (70.6 ->
    156.3 CPU-s, measured cold at load 10-15); `sequences` is a constant of the closure, and numba
    prunes the branch it turns off before typing, so each loop compiles only its own kinds
    (jit._named_by_variant gives the two their own names)."""

    def train_general_plan_steps(x_source, y_source, weight_source, order, has_weights, first_sample, n_samples,
                                 batch_size, n_steps, x_buf, y_buf, row_scale, per_row, loss_grad, unit, positions,
                                 kinds, geo, fparams, codes, back_codes, x_slots, dy_slots, need_dx, out_slot, bufs,
                                 slots, wide, wide_slots, ints, int_slots, uniforms, normals, offsets, regularized,
                                 reg_slots, reg_grad_slots, reg_rates, reg_grad_rates, activity, act_slots, act_rates,
                                 act_grad_rates, loss_mode, loss_code, metric_codes, values, totals, opt_code,
                                 flat_value, flat_grad, slot0, slot1, slot2, constants, flag, clipvalue, clipnorm,
                                 clip_bounds, clip_scale):
        """train_plan_steps for any stack of the general plan's kinds (see above); per step exactly
        Trainer.train_batch. x_slots[l] / dy_slots[l]: the bufs index layer l reads forward /
        backward; out_slot: the model's output; codes[l] / back_codes[l]: the activation forward
        and backward (for the last layer with a fused loss: linear, or -1 for an Activation layer,
        whose dx is then dy).
        Returns the number of steps run (a non-finite loss ends the chunk after its step)."""
        n_layers = kinds.shape[0]
        one = unit[1]
        units = loss_grad.shape[1]
        for step in range(n_steps):
            start = first_sample + step * batch_size
            if start >= n_samples:
                return step
            count = min(batch_size, n_samples - start)
            scale = next_batch(x_source, y_source, weight_source, order, has_weights, start, count, positions,
                                x_buf, y_buf, row_scale, unit)
            for layer in range(n_layers):
                kind = kinds[layer]
                if kind != KIND_VIEW:
                    samples = count * geo[layer, G_TIMES]  # the row's samples: TimeDistributed's count * steps
                    x = bufs[x_slots[layer]][:samples * geo[layer, G_IN]]
                    if sequences:
                        _sequence_forward(layer, kind, samples, geo, fparams, codes[layer], x, bufs, slots, wide,
                                          wide_slots, ints, int_slots, uniforms, normals, offsets)
                    else:
                        _spatial_forward(layer, kind, samples, geo, fparams, codes[layer], x, bufs, slots, wide,
                                         wide_slots, ints, int_slots, uniforms, normals, offsets)
            rows = count * positions
            out = bufs[out_slot][:rows * units].reshape(rows, units)
            yb = y_buf[:count].reshape(rows, y_buf.shape[1] // positions)  # per position: units values, or a label
            grad = loss_grad[:rows]
            loss_value = step_loss(loss_mode, loss_code, yb, out, scale, per_row[:rows], grad)
            if regularized:
                loss_value = loss_value + _penalties(bufs, reg_slots, reg_rates)
            if activity:
                loss_value = loss_value + _activity_penalties(bufs, slots, act_slots, act_rates, geo, count)
            record_step(values, step, loss_value, metric_codes, yb, out)
            for layer in range(n_layers - 1, -1, -1):
                kind = kinds[layer]
                if kind != KIND_VIEW:
                    samples = count * geo[layer, G_TIMES]
                    x = bufs[x_slots[layer]][:samples * geo[layer, G_IN]]
                    dy = bufs[dy_slots[layer]][:samples * geo[layer, G_OUT]]
                    if act_slots[layer] >= 0:  # dLoss/dy + the activity penalty's grad (Dense/_ConvBase backward)
                        act_grad_rates[layer, 2] = 1.0 / samples  # per sample of the row, as its penalty
                        dy = add_activity_grad(dy, bufs[slots[layer, S_Y]][:dy.shape[0]], bufs[act_slots[layer]],
                                               act_grad_rates[layer, 0], act_grad_rates[layer, 1], act_grad_rates[layer, 2])
                    if sequences:
                        _sequence_backward(layer, kind, samples, geo, fparams, back_codes[layer], x, dy,
                                           need_dx[layer], bufs, slots, wide, wide_slots, ints, int_slots)
                    else:
                        _spatial_backward(layer, kind, samples, geo, fparams, back_codes[layer], x, dy,
                                          need_dx[layer], bufs, slots, wide, wide_slots, ints, int_slots)
            if regularized:
                for layer in range(reg_slots.shape[0]):
                    for r in range(reg_slots.shape[1]):
                        if reg_slots[layer, r] >= 0:
                            l1l2_add_grad(bufs[reg_slots[layer, r]], bufs[reg_grad_slots[layer, r]],
                                          reg_grad_rates[layer, r, 0], reg_grad_rates[layer, r, 1])
            if end_step(opt_code, flat_value, flat_grad, slot0, slot1, slot2, constants[step], flag, clipvalue, one,
                        clipnorm, clip_bounds, clip_scale, totals, values, step, count, loss_value):
                return step + 1
        return n_steps

    return njit(train_general_plan_steps)



train_spatial_plan_steps = _general_plan_steps(False)  # models without recurrent or Embedding layers
train_sequence_plan_steps = _general_plan_steps(True)  # models with them (kernels/recurrent_steps.py)
