"""Optimizers: the base (slots, scalars, state, one fused kernel call) and the registry;
each update rule is in rules.py (tfjs-core/src/optimizers/*.ts).

`build_optimizer("adam")` uses TF.js's string-id defaults (tfjs-layers/src/optimizers.ts
getOptimizer); `build_optimizer({"type": "adam", "learning_rate": 0.01})` sets parameters and
takes the same defaults for the rest. `Optimizer.build(weights)` allocates the slots,
`apply(weights)` updates every trainable weight in place from its gradient with one fused
kernel, `state()` / `load_state()` save and restore everything a bit-identical resume needs.

All arithmetic runs in the weight's dtype with the hyperparameters rounded to it first, as
TF.js does in float32; epsilon defaults to TF.js's float32 backend epsilon, 1e-7.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from pydantic import model_validator

from trainctl.config.base import Configured, PositiveFloat, StrictModel, resolve_spec
from trainctl.errors import TrainctlError
from trainctl.registry import Registry

if TYPE_CHECKING:  # layers import initializers and regularizers; keep the import graph acyclic
    from trainctl.nn.layers.base import Weight

EPSILON = 1e-7  # TF.js ENGINE.backend.epsilon() for float32


class OptimizerParams(StrictModel):
    """Keys every optimizer accepts."""

    learning_rate: PositiveFloat = 0.01
    clipnorm: PositiveFloat | None = None  # Keras: rescale a weight's gradient whose L2 norm exceeds it
    clipvalue: PositiveFloat | None = None  # Keras: clip each gradient element to [-clipvalue, clipvalue]

    @model_validator(mode="after")
    def _one_clip(self):
        if self.clipnorm is not None and self.clipvalue is not None:
            raise ValueError("set clipnorm or clipvalue, not both (Keras allows only one)")
        return self


class _Slots:
    """One weight's slot arrays (weight-shaped, for state) and their flat views (for kernels)."""

    __slots__ = ("shape", "dtype", "arrays", "flat")

    def __init__(self, arrays: list[np.ndarray]):
        self.arrays = arrays
        self.flat = tuple(a.reshape(-1) for a in arrays)
        self.shape = arrays[0].shape if arrays else None
        self.dtype = arrays[0].dtype if arrays else None


class Optimizer(Configured):
    """Owns the loop over weights, clipping, slots and state; subclasses state their update.

    A subclass sets `slot_names` (suffixes, as TF.js names them: `dense_Dense1/kernel/m`),
    optionally `initial_slot_value`, `scalar_names` + `initial_scalars` (accumulated scalars
    such as Adam's beta powers), and implements `constants(dtype)` (per-step scalars in the
    weight dtype), `kernel()` and `end_step()`.
    """

    class_name: ClassVar[str]  # TF.js className: the Python class's unless it says otherwise
    Params: ClassVar[type[OptimizerParams]] = OptimizerParams
    slot_names: ClassVar[tuple[str, ...]] = ()
    scalar_names: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "class_name" not in cls.__dict__:  # as layers take theirs (nn/layers/base.Layer)
            cls.class_name = cls.__name__

    def __init__(self, params: OptimizerParams | None = None, /, **kwargs: Any):
        super().__init__(params, **kwargs)
        self.learning_rate = float(self.params.learning_rate)  # schedules change this between steps
        self.iterations = 0
        self._slots: dict[str, _Slots] = {}
        self._scalars: dict[str, np.ndarray] = {}  # 1-element arrays in the scalar dtype
        self._kernel: Any = None
        # When every trainable weight lives in one flat buffer (Sequential arranges that),
        # one kernel call updates them all: (names, value, grad, slot arrays).
        self._flat: tuple[frozenset[str], np.ndarray, np.ndarray, tuple[np.ndarray, ...]] | None = None

    # -- what subclasses state ----------------------------------------------------------
    def initial_slot_value(self, slot: str) -> float:
        return 0.0

    def initial_scalars(self) -> dict[str, float]:
        return {}

    def constants(self, dtype: type[np.floating]) -> tuple:
        """The kernel's scalar arguments after (value, grad, *slots), rounded to `dtype`."""
        raise NotImplementedError

    kernel_name: ClassVar[str]  # its update kernel in kernels/optimizers.py

    def kernel(self) -> Any:
        return _load_kernel(self.kernel_name)

    def end_step(self) -> None:
        """Advance accumulated scalars once every weight is updated (before iterations += 1)."""

    # -- the loop -------------------------------------------------------------------------
    def build(self, weights: list[Weight]) -> None:
        """Allocate slots (weight-shaped, weight dtype) for every trainable weight."""
        for w in weights:
            if w.trainable:
                self._slots_for(w)

    def build_flat(self, weights: list[Weight], flat_value: np.ndarray, flat_grad: np.ndarray) -> None:
        """Like build, for weights whose values and grads are consecutive views of
        `flat_value`/`flat_grad` (in order): slots become views of flat slot arrays too, so
        `apply` makes one kernel call per step instead of one per weight."""
        dtype = flat_value.dtype
        flat_slots = tuple(np.full(flat_value.shape, self.initial_slot_value(s), dtype) for s in self.slot_names)
        offset = 0
        for w in weights:
            size = w.value.size
            if not np.shares_memory(w.value, flat_value[offset:offset + size]):
                raise ValueError(f"{w.name} is not at offset {offset} of the flat buffer")
            self._slots[w.name] = _Slots([a[offset:offset + size].reshape(w.value.shape) for a in flat_slots])
            offset += size
        if offset != flat_value.size:
            raise ValueError("the flat buffer holds more than the given weights")
        self._ensure_scalars(dtype)
        self._flat = (frozenset(w.name for w in weights), flat_value, flat_grad, flat_slots)

    def apply(self, weights: list[Weight]) -> None:
        """value -= update(grad) for every trainable weight, in place; then iterations += 1."""
        if self._kernel is None:
            self._kernel = self.kernel()
        kernel = self._kernel
        flat = self._flat
        if flat is not None and self.params.clipnorm is None and len(weights) == len(flat[0]):
            # clipnorm is per weight (Keras), so it takes the per-weight path below
            names, value, grad, slots = flat
            dtype = value.dtype.type
            scale, clip = dtype(1.0), dtype(self.params.clipvalue or 0.0)
            kernel(value, grad, *slots, *self.constants(dtype), scale, clip)
            self.end_step()
            self.iterations += 1
            return
        constants: dict[np.dtype, tuple] = {}
        trainable = [(w, self._slots_for(w)) for w in weights if w.trainable]  # checks all before any update
        for w, slots in trainable:
            dtype = w.value.dtype
            if dtype not in constants:
                constants[dtype] = self.constants(dtype.type)
            scale, clip = self._clip_arguments(w.grad, dtype.type)
            kernel(w.value.reshape(-1), w.grad.reshape(-1), *slots.flat, *constants[dtype], scale, clip)
        if self.scalar_names and not self._scalars:  # no weights yet: TF.js scalars are float32
            self._ensure_scalars(np.dtype(np.float32))
        self.end_step()
        self.iterations += 1

    def _slots_for(self, w: Weight) -> _Slots:
        slots = self._slots.get(w.name)
        if slots is None:
            if not (w.value.flags.c_contiguous and w.grad.flags.c_contiguous):
                raise TrainctlError(f"{w.name}: optimizer needs C-contiguous value and grad arrays")
            if w.grad.shape != w.value.shape or w.grad.dtype != w.value.dtype:
                raise TrainctlError(f"{w.name}: grad {w.grad.shape} {w.grad.dtype} does not match value "
                                    f"{w.value.shape} {w.value.dtype}")
            if w.value.dtype not in (np.float32, np.float64):
                raise TrainctlError(f"{w.name}: optimizers update float32 or float64 weights, not {w.value.dtype}")
            arrays = [np.full(w.value.shape, self.initial_slot_value(s), w.value.dtype) for s in self.slot_names]
            slots = self._slots[w.name] = _Slots(arrays)
            self._ensure_scalars(w.value.dtype)
        elif self.slot_names and (slots.shape != w.value.shape or slots.dtype != w.value.dtype):
            raise TrainctlError(f"{w.name}: optimizer state is {slots.shape} {slots.dtype}, "
                                f"the weight is {w.value.shape} {w.value.dtype}")
        return slots

    def _ensure_scalars(self, dtype: np.dtype) -> None:
        # Accumulated scalars live in the dtype of the first weight built (TF.js: float32).
        if not self._scalars:
            self._scalars = {k: np.array([v], dtype) for k, v in self.initial_scalars().items()}

    def _clip_arguments(self, grad: np.ndarray, dtype: type[np.floating]) -> tuple:
        """(grad_scale, clipvalue) for the kernel: scale 1 and clipvalue 0 mean untouched."""
        p = self.params
        scale = 1.0
        if p.clipnorm is not None:
            from trainctl.kernels.optimizers import l2_norm

            norm = l2_norm(grad.reshape(-1))
            if norm > p.clipnorm:
                scale = p.clipnorm / norm
        return dtype(scale), dtype(p.clipvalue or 0.0)

    def _scalar(self, name: str, dtype: type[np.floating]) -> np.floating:
        return dtype(self._scalars[name][0])

    # -- state ------------------------------------------------------------------------------
    def state(self) -> dict[str, np.ndarray]:
        """Copies of every slot (`<weight name>/<slot>`), the accumulated scalars and
        `iterations`, all as arrays (scalars as 1-element arrays)."""
        out: dict[str, np.ndarray] = {"iterations": np.array([self.iterations], np.int64)}
        for name, value in self._scalars.items():
            out[name] = value.copy()
        for weight_name, slots in self._slots.items():
            for slot, array in zip(self.slot_names, slots.arrays):
                out[f"{weight_name}/{slot}"] = array.copy()
        return out

    def load_state(self, state: Mapping[str, np.ndarray]) -> None:
        """Restore what `state()` returned, exactly. Slots already built are filled in place
        (shapes must match); slots not built yet are created from the arrays."""
        state = dict(state)
        if "iterations" not in state:
            raise TrainctlError("optimizer state has no 'iterations' entry")
        iterations = int(np.asarray(state.pop("iterations")).reshape(-1)[0])
        scalars = {}
        for name in self.scalar_names:
            if name not in state:
                raise TrainctlError(f"optimizer state has no {name!r} entry ({self.type_id} needs it)")
            scalars[name] = np.array(np.asarray(state.pop(name)).reshape(-1)[:1])
        by_weight: dict[str, dict[str, np.ndarray]] = {}
        for key, array in state.items():
            weight_name, _, slot = key.rpartition("/")
            if slot not in self.slot_names or not weight_name:
                raise TrainctlError(f"optimizer state entry {key!r} is not a {self.type_id} slot")
            by_weight.setdefault(weight_name, {})[slot] = np.asarray(array)
        restored: dict[str, _Slots] = {}
        for weight_name, entries in by_weight.items():
            missing = [s for s in self.slot_names if s not in entries]
            if missing:
                raise TrainctlError(f"optimizer state for {weight_name} lacks {', '.join(missing)}")
            arrays = [entries[s] for s in self.slot_names]
            current = self._slots.get(weight_name)
            if current is not None:
                for slot, array, target in zip(self.slot_names, arrays, current.arrays):
                    if array.shape != target.shape:
                        raise TrainctlError(f"optimizer state {weight_name}/{slot} has shape {array.shape}, "
                                            f"the weight has {target.shape}")
            restored[weight_name] = _Slots([np.array(a, order="C") for a in arrays])
        for weight_name, slots in restored.items():  # all checked: now commit
            current = self._slots.get(weight_name)
            if current is None:
                self._slots[weight_name] = slots
            else:
                for source, target in zip(slots.arrays, current.arrays):
                    np.copyto(target, source, casting="same_kind")
        if scalars:
            self._scalars = scalars
        self.iterations = iterations

    # get_config (Configured): `{"type": id, **params}` as configured; the schedule, not
    # this, owns the live rate


OPTIMIZERS: Registry[type[Optimizer]] = Registry("optimizer")
_register = OPTIMIZERS.register_type


def _load_kernel(name: str) -> Any:
    from trainctl.kernels import optimizers as kernels

    return getattr(kernels, name)


def resolve_optimizer(spec: str | Mapping[str, Any]) -> dict[str, Any]:
    """The full resolved config (`{"type": id, **every param}`) of an optimizer spec."""
    cls, params = _resolve(spec)
    return {"type": cls.type_id, **params.to_dict()}


def build_optimizer(spec: str | Mapping[str, Any] | Optimizer) -> Optimizer:
    """`"adam"` (TF.js string-id defaults) or `{"type": "adam", "learning_rate": 0.01}` → Optimizer."""
    if isinstance(spec, Optimizer):
        return spec
    cls, params = _resolve(spec)
    return cls(params)


def _resolve(spec: Any) -> tuple[type[Optimizer], OptimizerParams]:
    if isinstance(spec, str) and OPTIMIZERS.resolve(spec) == "momentum":
        raise TrainctlError("optimizer 'momentum' has no string id in TF.js: write "
                            "{type: momentum, momentum: 0.9} (learning_rate defaults to 0.01)")
    return resolve_spec(OPTIMIZERS, spec)
