"""Plain numpy transcriptions of the TF.js optimizer updates, one step on whole arrays.

Each function mirrors `applyGradients` of tfjs-core/src/optimizers/<name>_optimizer.ts op by
op: every scalar is first made a tensor of the variable's dtype (TF.js: float32 scalars),
then each tf op is one numpy op. `state` is a dict of slot arrays and accumulated scalars
that the function updates; the returned array is the new value. Slow and obvious on purpose.
"""

from __future__ import annotations

import numpy as np

EPSILON = 1e-7  # ENGINE.backend.epsilon() for float32 (tfjs-core/src/backends/backend.ts)


def sgd(value, grad, state, *, learning_rate):
    """sgd_optimizer.ts: c = scalar(-learningRate); newValue = add(mul(c, gradient), value)."""
    dt = value.dtype.type
    c = dt(-learning_rate)
    return np.add(np.multiply(c, grad), value)


def momentum(value, grad, state, *, learning_rate, momentum, use_nesterov=False):
    """momentum_optimizer.ts:
    newAccumulation = add(mul(m, accumulation), gradient)
    nesterov: newValue = add(mul(c, add(gradient, mul(newAccumulation, m))), value)
    else:     newValue = add(mul(c, newAccumulation), value)
    """
    dt = value.dtype.type
    c, m = dt(-learning_rate), dt(momentum)
    acc = state.setdefault("momentum", np.zeros_like(value))
    new_acc = np.add(np.multiply(m, acc), grad)
    if use_nesterov:
        new_value = np.add(np.multiply(c, np.add(grad, np.multiply(new_acc, m))), value)
    else:
        new_value = np.add(np.multiply(c, new_acc), value)
    state["momentum"] = new_acc
    return new_value


def adam(value, grad, state, *, learning_rate, beta1=0.9, beta2=0.999, epsilon=EPSILON):
    """adam_optimizer.ts: accBeta1/accBeta2 start at beta1/beta2 (float32 variables) and are
    multiplied by beta1/beta2 after each step;
    newFirstMoment = add(mul(firstMoment, beta1), mul(gradient, 1 - beta1))
    newSecondMoment = add(mul(secondMoment, beta2), mul(square(gradient), 1 - beta2))
    biasCorrected* = div(new*, sub(1, accBeta*))
    newValue = add(mul(div(bcFirst, add(sqrt(bcSecond), epsilon)), -learningRate), value)
    """
    dt = value.dtype.type
    acc1 = state.setdefault("acc_beta1", dt(beta1))
    acc2 = state.setdefault("acc_beta2", dt(beta2))
    m = state.setdefault("m", np.zeros_like(value))
    v = state.setdefault("v", np.zeros_like(value))
    new_m = np.add(np.multiply(m, dt(beta1)), np.multiply(grad, dt(1 - beta1)))
    new_v = np.add(np.multiply(v, dt(beta2)), np.multiply(np.square(grad), dt(1 - beta2)))
    m_hat = np.divide(new_m, np.subtract(dt(1), acc1))
    v_hat = np.divide(new_v, np.subtract(dt(1), acc2))
    new_value = np.add(np.multiply(np.divide(m_hat, np.add(np.sqrt(v_hat), dt(epsilon))), dt(-learning_rate)), value)
    state["m"], state["v"] = new_m, new_v
    state["acc_beta1"] = np.multiply(acc1, dt(beta1))
    state["acc_beta2"] = np.multiply(acc2, dt(beta2))
    return new_value


def adamax(value, grad, state, *, learning_rate, beta1=0.9, beta2=0.999, epsilon=EPSILON, decay=0.0):
    """adamax_optimizer.ts: iteration (float32, from 0) and accBeta1 (from beta1) variables;
    lr = div(-learningRate, add(mul(iteration, decay), 1))
    newFirstMoment = add(mul(firstMoment, beta1), mul(gradient, 1 - beta1))
    newWeightedInfNorm = maximum(mul(weightedInfNorm, beta2), abs(gradient))
    newValue = add(mul(div(lr, 1 - accBeta1), div(newFirstMoment, add(newWeightedInfNorm, eps))), value)
    """
    dt = value.dtype.type
    iteration = state.setdefault("iteration", dt(0))
    acc1 = state.setdefault("acc_beta1", dt(beta1))
    m = state.setdefault("m", np.zeros_like(value))
    u = state.setdefault("v", np.zeros_like(value))
    lr = np.divide(dt(-learning_rate), np.add(np.multiply(iteration, dt(decay)), dt(1)))
    one_minus_acc1 = np.subtract(dt(1), acc1)
    new_m = np.add(np.multiply(m, dt(beta1)), np.multiply(grad, dt(1 - beta1)))
    new_u = np.maximum(np.multiply(u, dt(beta2)), np.abs(grad))
    new_value = np.add(np.multiply(np.divide(lr, one_minus_acc1), np.divide(new_m, np.add(new_u, dt(epsilon)))), value)
    state["m"], state["v"] = new_m, new_u
    state["iteration"] = np.add(iteration, dt(1))
    state["acc_beta1"] = np.multiply(acc1, dt(beta1))
    return new_value


def adagrad(value, grad, state, *, learning_rate, initial_accumulator_value=0.1):
    """adagrad_optimizer.ts: accumulator = fill(shape, initialAccumulatorValue);
    newAccumulatedGrad = add(accumulatedGrad, square(gradient))
    newValue = add(mul(div(gradient, sqrt(add(newAccumulatedGrad, backend.epsilon()))), -learningRate), value)
    """
    dt = value.dtype.type
    acc = state.setdefault("accumulator", np.full_like(value, initial_accumulator_value))
    new_acc = np.add(acc, np.square(grad))
    new_value = np.add(np.multiply(np.divide(grad, np.sqrt(np.add(new_acc, dt(EPSILON)))), dt(-learning_rate)), value)
    state["accumulator"] = new_acc
    return new_value


def adadelta(value, grad, state, *, learning_rate, rho=0.95, epsilon=EPSILON):
    """adadelta_optimizer.ts (note: `updates` divides by the accumulatedGrad read BEFORE this step):
    newAccumulatedGrad = add(mul(accumulatedGrad, rho), mul(square(gradient), 1 - rho))
    updates = mul(div(sqrt(add(accumulatedUpdate, eps)), sqrt(add(accumulatedGrad, eps))), gradient)
    newAccumulatedUpdate = add(mul(accumulatedUpdate, rho), mul(square(updates), 1 - rho))
    newValue = add(mul(updates, -learningRate), value)
    """
    dt = value.dtype.type
    acc_g = state.setdefault("accum_grad", np.zeros_like(value))
    acc_u = state.setdefault("accum_var", np.zeros_like(value))
    new_acc_g = np.add(np.multiply(acc_g, dt(rho)), np.multiply(np.square(grad), dt(1 - rho)))
    updates = np.multiply(np.divide(np.sqrt(np.add(acc_u, dt(epsilon))), np.sqrt(np.add(acc_g, dt(epsilon)))), grad)
    new_acc_u = np.add(np.multiply(acc_u, dt(rho)), np.multiply(np.square(updates), dt(1 - rho)))
    state["accum_grad"], state["accum_var"] = new_acc_g, new_acc_u
    return np.add(np.multiply(updates, dt(-learning_rate)), value)


def rmsprop(value, grad, state, *, learning_rate, decay=0.9, momentum=0.0, epsilon=EPSILON, centered=False):
    """rmsprop_optimizer.ts:
    newAccumulatedMeanSquare = accumulatedMeanSquare.mul(decay).add(gradient.square().mul(1 - decay))
    centered: newAccumulatedMeanGrad = accumulatedMeanGrad.mul(decay).add(gradient.mul(1 - decay))
              newAccumulatedMoments = accumulatedMoments.mul(momentum).add(gradient.mul(learningRate)
                  .div(newAccumulatedMeanSquare.sub(newAccumulatedMeanGrad.square().add(epsilon)).sqrt()))
    plain:    newAccumulatedMoments = accumulatedMoments.mul(momentum).add(gradient.mul(learningRate)
                  .div(newAccumulatedMeanSquare.add(epsilon).sqrt()))
    newValue = value.sub(newAccumulatedMoments)
    """
    dt = value.dtype.type
    ms = state.setdefault("rms", np.zeros_like(value))
    mom = state.setdefault("momentum", np.zeros_like(value))
    new_ms = np.add(np.multiply(ms, dt(decay)), np.multiply(np.square(grad), dt(1 - decay)))
    if centered:
        mg = state.setdefault("mg", np.zeros_like(value))
        new_mg = np.add(np.multiply(mg, dt(decay)), np.multiply(grad, dt(1 - decay)))
        denominator = np.sqrt(np.subtract(new_ms, np.add(np.square(new_mg), dt(epsilon))))
        state["mg"] = new_mg
    else:
        denominator = np.sqrt(np.add(new_ms, dt(epsilon)))
    new_mom = np.add(np.multiply(mom, dt(momentum)), np.divide(np.multiply(grad, dt(learning_rate)), denominator))
    state["rms"], state["momentum"] = new_ms, new_mom
    return np.subtract(value, new_mom)


UPDATES = {
    "sgd": sgd,
    "momentum": momentum,
    "adam": adam,
    "adamax": adamax,
    "adagrad": adagrad,
    "adadelta": adadelta,
    "rmsprop": rmsprop,
}


def clip_gradient(grad, *, clipnorm=None, clipvalue=None):
    """Keras semantics: clipnorm rescales to norm clipnorm when the L2 norm exceeds it
    (keras/src/optimizers/base_optimizer.py clip_by_norm); clipvalue clips elementwise."""
    grad = np.array(grad, dtype=np.float64)
    if clipnorm is not None:
        norm = np.sqrt(np.sum(grad * grad))
        if norm > clipnorm:
            grad = grad * (clipnorm / norm)
    if clipvalue is not None:
        grad = np.clip(grad, -clipvalue, clipvalue)
    return grad
