"""Layer configs ⇄ Keras-style `{class_name, config}` objects, for TF.js and Keras 3.

A layer's Keras config is derived from its `Params`: every field keeps its snake_case key
(TF.js serialises Keras-2 style, snake_case), registry fields (marked with `RegistryRef`) are
translated to the other runtime's objects, `None` values are left out. Layers whose config
differs adjust the result in their `to_keras_config` / `from_keras_config` hooks.

`fmt` is "tfjs" (tfjs-layers 4.x reading Keras-2 JSON) or "keras" (Keras 3 `.keras`).
"""

from __future__ import annotations

from typing import Any

from trainctl.config.base import RegistryRef
from trainctl.registry import Registry, snake_case
from trainctl.runs.formats import ExportRefused, ImportFailed

# Keys every layer config may carry that are not layer Params (handled by the model writer).
_MODEL_LEVEL_KEYS = {"input_shape", "batch_input_shape"}
# Keys other runtimes write that trainctl reads as "nothing to do" when they hold these values.
_IGNORABLE = {
    "dtype": (None, "float32", "float64"),
    "kernel_constraint": (None,), "bias_constraint": (None,),
    "embeddings_constraint": (None,), "recurrent_constraint": (None,),
    "beta_constraint": (None,), "gamma_constraint": (None,),
    "depthwise_constraint": (None,), "pointwise_constraint": (None,),
    "lora_rank": (None,), "lora_alpha": (None,), "quantization_config": (None,),
}

# Options other runtimes write that a trainctl layer lacks, at the value that means "off"
# (Keras 3 writes groups=1 on convolutions, keepdims=False on global pooling, data_format on
# 1-D layers, synchronized=False on batch norm, rms_scaling=False on layer norm): read as
# nothing to do.
_NEUTRAL_IF_ABSENT = {"groups": (1,), "keepdims": (False,), "data_format": ("channels_last",),
                      "synchronized": (False,), "rms_scaling": (False,), "renorm": (False,),
                      "renorm_momentum": (0.99,)}  # (renorm_momentum: its default, unused without renorm)
# Keras 3 renamed options: (class name, Keras 3 key) → trainctl/TF.js key.
_KERAS3_RENAMES = {("LeakyReLU", "negative_slope"): "alpha"}
# Keras 3 layers whose constructor takes no `trainable` argument.
_KERAS3_NO_TRAINABLE = {"SpatialDropout1D", "SpatialDropout2D"}
# Layers Keras 3 does not have, or whose variables it keeps in nested objects
# (layers/lstm/cell/vars, forward_layer/...) that this writer does not lay out yet.
_NESTED = "trainctl does not write Keras 3's nested recurrent/wrapper variables yet"
_NOT_IN_KERAS3 = {"ThresholdedReLU": "Keras 3 removed ThresholdedReLU", "SimpleRNN": _NESTED, "LSTM": _NESTED,
                  "GRU": _NESTED, "Bidirectional": _NESTED, "TimeDistributed": _NESTED}

# TF.js serialises activations by class name; two differ from trainctl's snake_case ids.
_TFJS_ACTIVATION = {"hard_sigmoid": "hardSigmoid", "log_softmax": "logSoftmax"}
# Keras 3 names; trainctl activations Keras has no string for are refused.
_KERAS_ACTIVATION = {"swish": "silu"}
_NOT_IN_KERAS_ACTIVATIONS = {
    "gelu_new": "Keras 3 has no string id for the tanh approximation",
    "hard_sigmoid": "TF.js's hard_sigmoid is clip(0.2x+0.5), Keras 3's is clip(x/6+0.5)",
}


def _float_policy(value: Any) -> bool:
    return isinstance(value, dict) and (value.get("config") or {}).get("name") in ("float32", "float64")


def registry_ref(field: Any) -> RegistryRef | None:
    for item in field.metadata:
        if isinstance(item, RegistryRef):
            return item
    return None


# -- activations ---------------------------------------------------------------------------
def activation_to(name: str, fmt: str, where: str) -> str:
    if fmt == "tfjs":
        return _TFJS_ACTIVATION.get(name, name)
    if name in _NOT_IN_KERAS_ACTIVATIONS:
        raise ExportRefused(f"{where}: activation {name!r} cannot be exported to Keras: "
                            f"{_NOT_IN_KERAS_ACTIVATIONS[name]} (keras export)")
    return _KERAS_ACTIVATION.get(name, name)


def activation_from(value: Any, where: str, fmt: str = "tfjs") -> str:
    from trainctl.nn.activations import ACTIVATIONS

    if isinstance(value, dict):  # Keras 3 may serialise a function object
        value = value.get("config", value.get("class_name"))
    if fmt == "keras" and value in _NOT_IN_KERAS_ACTIVATIONS:
        raise ImportFailed(f"{where}: Keras activation {value!r} has no trainctl equivalent: "
                           f"{_NOT_IN_KERAS_ACTIVATIONS[value]}")
    if not isinstance(value, str) or value not in ACTIVATIONS:
        raise ImportFailed(f"{where}: unknown activation {value!r}")
    return ACTIVATIONS.resolve(value)


# -- initializers and regularizers ---------------------------------------------------------
def _keras_object(class_name: str, config: dict, fmt: str, module: str) -> dict:
    if fmt == "tfjs":
        return {"class_name": class_name, "config": config}
    return {"module": module, "class_name": class_name, "config": config, "registered_name": None}


def initializer_to(spec: dict, fmt: str, where: str) -> dict:
    from trainctl.nn.initializers import INITIALIZERS

    cls = INITIALIZERS.get(spec["type"])
    config = {k: v for k, v in spec.items() if k != "type"}
    if fmt == "tfjs" and "seed" in cls.Params.model_fields:
        config.setdefault("seed", None)
    if fmt == "keras" and cls.type_id == "variance_scaling" and config.get("distribution") == "normal":
        config["distribution"] = "truncated_normal"  # what TF.js's 'normal' draws
    return _keras_object(cls.class_name, config, fmt, "keras.initializers")


def regularizer_to(spec: dict, fmt: str, where: str) -> dict:
    config = {"l1": float(spec.get("l1", 0.0)), "l2": float(spec.get("l2", 0.0))}
    return _keras_object("L1L2", config, fmt, "keras.regularizers")  # as TF.js serialises l1()/l2()


def _by_class_name(registry: Registry) -> dict[str, str]:
    table = {}
    for type_id in registry.names():
        entry = registry.get(type_id)
        table.setdefault(getattr(entry, "class_name", type_id), type_id)
    return table


def spec_from(registry: Registry, value: Any, where: str) -> Any:
    """A `{class_name, config}` object (or a bare id) → trainctl spec `{type: id, **params}`."""
    if value is None or isinstance(value, str):
        if value is not None and value not in registry:
            raise ImportFailed(f"{where}: unknown {registry.kind} {value!r}")
        return registry.resolve(value) if value is not None else None
    if not isinstance(value, dict) or "class_name" not in value:
        raise ImportFailed(f"{where}: expected a {{class_name, config}} {registry.kind}, got {value!r}")
    class_name = value["class_name"]
    table = _by_class_name(registry)
    type_id = table.get(class_name) or (snake_case(class_name) if snake_case(class_name) in registry else None)
    if type_id is None:
        raise ImportFailed(f"{where}: unknown {registry.kind} class {class_name!r}")
    params = registry.get(type_id).Params.model_fields
    config = {snake_case(k): v for k, v in (value.get("config") or {}).items()}
    if registry.kind == "regularizer":
        config = {k: v for k, v in config.items() if k in ("l1", "l2")}
        return {"type": "l1l2", "l1": float(config.get("l1", 0.0)), "l2": float(config.get("l2", 0.0))}
    if "distribution" in config and config["distribution"] in ("truncated_normal", "truncatedNormal"):
        config["distribution"] = "normal"
    unknown = [k for k in config if k not in params and config[k] is not None]
    if unknown:
        raise ImportFailed(f"{where}: {class_name} option {unknown[0]!r} is not supported by trainctl")
    return {"type": type_id, **{k: v for k, v in config.items() if k in params and v is not None}}


def _value_to(ref: RegistryRef, value: Any, fmt: str, where: str) -> Any:
    kind = ref.registry.kind
    if kind == "activation":
        return activation_to(value, fmt, where)
    if kind == "initializer":
        return initializer_to(value, fmt, where)
    if kind == "regularizer":
        return regularizer_to(value, fmt, where)
    raise ExportRefused(f"{where}: a {kind} option has no {fmt} form")


def _value_from(ref: RegistryRef, value: Any, where: str, fmt: str) -> Any:
    if ref.registry.kind == "activation":
        return activation_from(value, where, fmt) if value is not None else None
    return spec_from(ref.registry, value, where)


# -- layers --------------------------------------------------------------------------------
def layer_to_keras(layer: Any, fmt: str) -> dict[str, Any]:
    """`{"class_name": ..., "config": {...}}` of one built trainctl layer (no input shape;
    the model writer adds `batch_input_shape` / an InputLayer)."""
    where = f"{layer.name} ({layer.class_name})"
    if fmt == "tfjs" and not layer.in_tfjs:
        raise ExportRefused(f"{layer.name}: TF.js has no {layer.class_name} layer (tfjs export)")
    if fmt == "keras" and layer.class_name in _NOT_IN_KERAS3:
        raise ExportRefused(f"{layer.name}: {_NOT_IN_KERAS3[layer.class_name]} (keras export)")
    params = layer.params
    values = params.to_dict()
    config: dict[str, Any] = {}
    for key, field in type(params).model_fields.items():
        value = values[key]
        if key in _MODEL_LEVEL_KEYS or value is None:
            continue
        ref = registry_ref(field)
        if key == "layer" and layer.wrapped_layer is not None:  # a wrapper: the inner layer's own object
            config[key] = layer_to_keras(layer.wrapped_layer, fmt)
            continue
        config[key] = _value_to(ref, value, fmt, f"{where}.{key}") if ref is not None else value
    config["name"] = layer.name
    config = layer.to_keras_config(config, fmt)
    if fmt == "keras":
        for (class_name, theirs), ours in _KERAS3_RENAMES.items():
            if class_name == layer.class_name and ours in config:
                config[theirs] = config.pop(ours)
        if layer.class_name in _KERAS3_NO_TRAINABLE:
            config.pop("trainable", None)
    return {"class_name": layer.class_name, "config": config}


def layer_classes() -> dict[str, Any]:
    """TF.js / Keras class name → trainctl layer class, for every registered layer."""
    from trainctl.nn.layers import LAYERS

    return {LAYERS.get(type_id).class_name: LAYERS.get(type_id) for type_id in LAYERS.names()}


def layer_from_keras(item: Any, fmt: str, where: str) -> dict[str, Any]:
    """A Keras/TF.js layer object → a trainctl layer spec `{type: id, ...}` (the config
    keys Params accepts; `batch_input_shape` kept for the first layer)."""
    if not isinstance(item, dict) or "class_name" not in item:
        raise ImportFailed(f"{where}: a layer must be an object with class_name and config")
    class_name = item["class_name"]
    classes = layer_classes()
    cls = classes.get(class_name)
    if cls is None:
        raise ImportFailed(f"{where}: unknown layer class {class_name!r} (trainctl has: {', '.join(sorted(classes))})")
    where = f"{where} ({class_name})"
    if fmt == "keras" and class_name in _NOT_IN_KERAS3 and class_name != "ThresholdedReLU":
        raise ImportFailed(f"{where}: {_NOT_IN_KERAS3[class_name].replace('write', 'read')}")
    config = {snake_case(k): v for k, v in dict(item.get("config") or {}).items()}
    for (renamed_class, theirs), ours in _KERAS3_RENAMES.items():
        if renamed_class == class_name and theirs in config:
            config[ours] = config.pop(theirs)
    config = cls.from_keras_config(config, fmt)
    fields = cls.Params.model_fields
    spec: dict[str, Any] = {"type": cls.type_id}
    for key, value in config.items():
        if key in _IGNORABLE and (value in _IGNORABLE[key] or (key == "dtype" and _float_policy(value))):
            continue  # float dtypes (Keras 3 writes a DTypePolicy object) and absent constraints
        if key == "batch_input_shape":
            spec["batch_input_shape"] = list(value)
            continue
        field = fields.get(key)
        if field is None:
            if value is None or value in _NEUTRAL_IF_ABSENT.get(key, ()):
                continue
            raise ImportFailed(f"{where}: option {key}={value!r} is not supported by trainctl")
        if value is None and field.default is not None:
            continue  # TF.js writes null for an option left unset (mask_zero): the default
        ref = registry_ref(field)
        if key == "layer" and isinstance(value, dict) and "class_name" in value:  # a wrapper's inner layer
            spec[key] = layer_from_keras(value, fmt, f"{where}.layer")
            continue
        spec[key] = _value_from(ref, value, f"{where}.{key}", fmt) if ref is not None else value
    return spec


# -- optimizers and losses -----------------------------------------------------------------
def optimizer_to_tfjs(spec: dict[str, Any], where: str = "optimizer") -> dict[str, Any]:
    """trainctl optimizer spec → TF.js `optimizer_config` ({class_name, config} in camelCase)."""
    from trainctl.nn.optimizers import OPTIMIZERS, resolve_optimizer

    resolved = resolve_optimizer(spec)
    cls = OPTIMIZERS.get(resolved["type"])
    params = cls.Params.model_validate({k: v for k, v in resolved.items() if k != "type"})
    for option in ("clipnorm", "clipvalue"):
        if getattr(params, option, None) is not None:
            raise ExportRefused(f"{where}: {option} has no TF.js optimizer equivalent (tfjs export)")
    config = {k: v for k, v in params.model_dump(mode="json", by_alias=True).items()
              if k not in ("clipnorm", "clipvalue") and v is not None}
    return {"class_name": cls.class_name, "config": config}


def optimizer_from_tfjs(value: Any, where: str) -> dict[str, Any]:
    from trainctl.nn.optimizers import OPTIMIZERS

    if isinstance(value, str):
        if value not in OPTIMIZERS:
            raise ImportFailed(f"{where}: unknown optimizer {value!r}")
        return {"type": OPTIMIZERS.resolve(value)}
    if not isinstance(value, dict) or "class_name" not in value:
        raise ImportFailed(f"{where}: expected {{class_name, config}}, got {value!r}")
    table = _by_class_name(OPTIMIZERS)
    type_id = table.get(value["class_name"])
    if type_id is None:
        raise ImportFailed(f"{where}: unknown optimizer class {value['class_name']!r}")
    fields = OPTIMIZERS.get(type_id).Params.model_fields
    spec = {"type": type_id}
    for key, option in (value.get("config") or {}).items():
        key = snake_case(key)
        if key not in fields:
            raise ImportFailed(f"{where}: {value['class_name']} option {key!r} is not supported by trainctl")
        spec[key] = option
    return spec
