"""The update rules (tfjs-core/src/optimizers/*.ts): each optimizer is its Params, its
slots, its kernel's scalar arguments and its kernel (kernels/optimizers.py)."""

from __future__ import annotations

from typing import Any

from trainctl.config.base import NonNegativeFloat, PositiveFloat, UnitInterval
from trainctl.nn.optimizers.base import EPSILON, Optimizer, OptimizerParams, _load_kernel, _register


@_register("sgd", "SGD")
class SGD(Optimizer):
    kernel_name = "sgd_update"

    class Params(OptimizerParams):
        learning_rate: PositiveFloat = 0.01  # getOptimizer('sgd')

    def constants(self, dtype):
        return (dtype(-self.learning_rate),)



@_register("momentum")
class Momentum(Optimizer):
    kernel_name = "momentum_update"
    slot_names = ("momentum",)

    class Params(OptimizerParams):
        learning_rate: PositiveFloat = 0.01  # TF.js has no 'momentum' string id; same as sgd
        momentum: NonNegativeFloat  # required: tf.train.momentum has no default
        use_nesterov: bool = False  # TF.js default

    def constants(self, dtype):
        return dtype(-self.learning_rate), dtype(self.params.momentum), self.params.use_nesterov



@_register("adam")
class Adam(Optimizer):
    kernel_name = "adam_update"
    slot_names = ("m", "v")
    scalar_names = ("acc_beta1", "acc_beta2")

    class Params(OptimizerParams):
        learning_rate: PositiveFloat = 0.001  # getOptimizer('adam')
        beta1: UnitInterval = 0.9
        beta2: UnitInterval = 0.999
        epsilon: NonNegativeFloat = EPSILON  # 0 accepted, as TF.js (only null takes the backend epsilon)

    def initial_scalars(self):
        return {"acc_beta1": self.params.beta1, "acc_beta2": self.params.beta2}

    def constants(self, dtype):
        # Called every step: the fixed part is rounded to `dtype` once per (dtype, rate).
        key = (dtype, self.learning_rate)
        if getattr(self, "_fixed_key", None) != key:
            p = self.params
            self._fixed = (dtype(-self.learning_rate), dtype(p.beta1), dtype(p.beta2),
                           dtype(1 - p.beta1), dtype(1 - p.beta2))
            self._epsilon, self._one, self._fixed_key = dtype(p.epsilon), dtype(1), key
        one = self._one
        return (*self._fixed, one - self._scalar("acc_beta1", dtype), one - self._scalar("acc_beta2", dtype),
                self._epsilon)


    def end_step(self):
        acc1, acc2 = self._scalars["acc_beta1"], self._scalars["acc_beta2"]
        # element-wise, in the scalars' own dtype (same rounding as the in-place array multiply)
        acc1[0] = acc1[0] * acc1.dtype.type(self.params.beta1)
        acc2[0] = acc2[0] * acc2.dtype.type(self.params.beta2)


@_register("adamax")
class Adamax(Optimizer):
    kernel_name = "adamax_update"
    slot_names = ("m", "v")
    scalar_names = ("acc_beta1",)

    class Params(OptimizerParams):
        learning_rate: PositiveFloat = 0.002  # getOptimizer('adamax')
        beta1: UnitInterval = 0.9
        beta2: UnitInterval = 0.999
        epsilon: NonNegativeFloat = EPSILON  # 0 accepted, as TF.js (only null takes the backend epsilon)
        decay: NonNegativeFloat = 0.0  # learning rate / (1 + decay * iteration)

    def initial_scalars(self):
        return {"acc_beta1": self.params.beta1}

    def constants(self, dtype):
        p = self.params
        # TF.js: lr = -learningRate / (iteration * decay + 1), then lr / (1 - accBeta1)
        lr = dtype(-self.learning_rate) / (dtype(self.iterations) * dtype(p.decay) + dtype(1))
        step_factor = lr / (dtype(1) - self._scalar("acc_beta1", dtype))
        return dtype(step_factor), dtype(p.beta1), dtype(p.beta2), dtype(1 - p.beta1), dtype(p.epsilon)


    def end_step(self):
        acc1 = self._scalars["acc_beta1"]
        acc1 *= acc1.dtype.type(self.params.beta1)


@_register("adagrad")
class Adagrad(Optimizer):
    kernel_name = "adagrad_update"
    slot_names = ("accumulator",)

    class Params(OptimizerParams):
        learning_rate: PositiveFloat = 0.01  # getOptimizer('adagrad')
        initial_accumulator_value: NonNegativeFloat = 0.1  # TF.js default

    def initial_slot_value(self, slot):
        return self.params.initial_accumulator_value

    def constants(self, dtype):
        # TF.js adds the backend epsilon inside the sqrt; it is not an option there
        return dtype(-self.learning_rate), dtype(EPSILON)



@_register("adadelta")
class Adadelta(Optimizer):
    kernel_name = "adadelta_update"
    slot_names = ("accum_grad", "accum_var")

    class Params(OptimizerParams):
        learning_rate: PositiveFloat = 1.0  # getOptimizer('adadelta'), as Keras
        rho: UnitInterval = 0.95
        epsilon: NonNegativeFloat = EPSILON  # 0 accepted, as TF.js (only null takes the backend epsilon)

    def constants(self, dtype):
        p = self.params
        return dtype(-self.learning_rate), dtype(p.rho), dtype(1 - p.rho), dtype(p.epsilon)



@_register("rmsprop", "rms_prop", "RMSProp")
class RMSProp(Optimizer):

    class Params(OptimizerParams):
        learning_rate: PositiveFloat = 0.001  # getOptimizer('rmsprop')
        decay: UnitInterval = 0.9  # discount of the mean square (Keras calls it rho)
        momentum: NonNegativeFloat = 0.0
        epsilon: NonNegativeFloat = EPSILON  # 0 accepted, as TF.js (only null takes the backend epsilon)
        centered: bool = False  # divide by the estimated variance of the gradient instead

    def __init__(self, params: OptimizerParams | None = None, /, **kwargs: Any):
        super().__init__(params, **kwargs)
        # instance attribute: the centered form carries one more slot
        self.slot_names = ("rms", "momentum", "mg") if self.params.centered else ("rms", "momentum")

    def constants(self, dtype):
        p = self.params
        return dtype(self.learning_rate), dtype(p.decay), dtype(1 - p.decay), dtype(p.momentum), dtype(p.epsilon)

    def kernel(self):
        return _load_kernel("rmsprop_centered_update" if self.params.centered else "rmsprop_update")
