"""What of a layer's weights a compiled plan holds: the (value, grad) pairs per plan, the
regularized weights among them (train/compiled.py falls back to the Python path when a plan
does not hold one), their penalty and gradient rates per layer, and each trainable weight's
span in the flat buffer. Shared by the dense loop's plan (dense_loop_plan.py) and the general
plan (compiled_plans.py)."""

from __future__ import annotations

import numpy as np


def typed_list(items):
    from numba.typed import List

    out = List()
    for item in items:
        out.append(item)
    return out


def regularizer_rows(model, plans, dtype):
    """Per layer, its regularized weights in weight order (as Layer.regularization_loss sums
    them): which (kernel/bias), the penalty's float64 rates and the gradient's rates in the
    model's dtype (as Regularizer.add_grad rounds them). None: a regularized weight the plan
    does not hold."""
    from trainctl.kernels.plan_steps import REG_BIAS, REG_KERNEL, REG_NONE

    n = len(plans)
    which = np.full((n, 2), REG_NONE, np.int64)
    rates = np.zeros((n, 2, 2), np.float64)
    grad_rates = np.zeros((n, 2, 2), dtype)
    for index, (layer, plan) in enumerate(zip(model.layers, plans)):
        pairs = regularized_pairs(layer, plan)
        if pairs is None:
            return None
        for row, (regularizer, (value, _)) in enumerate(pairs):
            which[index, row] = REG_KERNEL if value is plan.kernel else REG_BIAS
            rates[index, row] = (regularizer.l1, regularizer.l2)
            grad_rates[index, row] = (dtype.type(regularizer.l1), dtype.type(2.0 * regularizer.l2))
    return which, rates, grad_rates


def weight_bounds(weights, flat_value: np.ndarray) -> np.ndarray | None:
    """Each trainable weight's [start, end) in the flat buffer, as sorted bounds (clipnorm's
    per-weight segments); None when the weights are not exactly the buffer."""
    itemsize, base = flat_value.itemsize, flat_value.__array_interface__["data"][0]
    spans = sorted(((w.value.__array_interface__["data"][0] - base) // itemsize, w.value.size)
                   for w in weights if w.trainable)
    bounds = [0]
    for start, size in spans:
        if start != bounds[-1]:
            return None
        bounds.append(start + size)
    return np.array(bounds, np.int64) if bounds[-1] == flat_value.size else None


def activity_held(layer) -> bool:
    """Whether the compiled loop runs this layer's activity regularizer (if it has one)."""
    from trainctl.nn.layers.base import ProductPlan

    from trainctl.nn.layers.plans import main_plan

    plan = main_plan(layer.compiled_plan())
    return not layer.has_activity_regularizer or (isinstance(plan, ProductPlan) and plan.activity_regularizer is not None)


def _plan_weights(plan) -> list[tuple[np.ndarray, np.ndarray]]:
    """The (value, grad) pairs of the weights a plan holds, in the layer's weight order."""
    from trainctl.nn.layers.base import ProductPlan
    from trainctl.nn.layers.plans import BatchNormPlan, LayerNormPlan, PReLUPlan

    if isinstance(plan, ProductPlan):
        from trainctl.train.compiled_zoo import zoo_weights

        return [(plan.kernel, plan.kernel_grad), (plan.bias, plan.bias_grad), *zoo_weights(plan)]
    if isinstance(plan, (BatchNormPlan, LayerNormPlan)):
        return [(plan.gamma, plan.gamma_grad), (plan.beta, plan.beta_grad)]
    if isinstance(plan, PReLUPlan):
        return [(plan.alpha, plan.alpha_grad)]
    return _sequence_plan_weights(plan)


def _sequence_plan_weights(plan) -> list[tuple[np.ndarray, np.ndarray]]:
    from trainctl.nn.layers.embedding import EmbeddingPlan
    from trainctl.nn.layers.plans import BidirectionalPlan
    from trainctl.nn.layers.recurrent import RecurrentPlan

    if isinstance(plan, RecurrentPlan):
        return list(plan.weights)
    if isinstance(plan, BidirectionalPlan):  # Bidirectional.weights: the forward copy's, then the backward's
        return [*plan.forward.weights, *plan.backward.weights]
    if isinstance(plan, EmbeddingPlan):
        return [(plan.embeddings, plan.embeddings_grad)]
    return []


def _same_memory(a: np.ndarray, b: np.ndarray) -> bool:
    return a.size == b.size and a.dtype == b.dtype and a.__array_interface__["data"][0] == b.__array_interface__["data"][0]


def regularized_pairs(layer, plan):
    """Per regularized weight of `layer` (weight order): its regularizer and the plan's (value,
    grad) pair holding it; None when the plan does not hold one of them."""
    from trainctl.nn.layers.plans import main_plan

    plan = main_plan(plan)
    pairs = []
    for weight in layer.weights:
        if weight.regularizer is None:
            continue
        held = [pair for pair in _plan_weights(plan) if _same_memory(pair[0], weight.value)]
        if not held:
            return None
        pairs.append((weight.regularizer, held[0]))
    return pairs


def regularized_weights_held(model) -> bool:
    return all(regularized_pairs(layer, layer.compiled_plan()) is not None for layer in model.layers)
