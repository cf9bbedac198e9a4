"""The config's JSON Schema, generated from the same pydantic models and registries that
validate it, so an editor (yaml-language-server: `# yaml-language-server: $schema=...`)
completes and checks the keys trainctl accepts.

Typed sections (`model.layers`, `optimizer`, `callbacks`) become one object schema per
registry entry, told apart by `type`; ids (`loss`, `metrics`, string shorthands) are enums of
the canonical snake_case id, its TF.js camelCase spelling and the registered aliases.
Every multi-word key is offered in both spellings, as StrictModel accepts both.
The schema is for editors; `trainctl validate` stays the authority (it also checks
shapes, ranges across keys and data).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.alias_generators import to_camel
from pydantic.json_schema import models_json_schema

from trainctl.config.schema import _NAME, FitConfig, NoParams, Registries, default_registries

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_FILE = "schema/config.schema.json"  # in the repository; the shipped configs point at it


def id_spellings(registry, name: str) -> list[str]:
    """Every spelling of `name` an editor should offer: the id, its camelCase form, aliases."""
    spellings = [name, to_camel(name)]
    for alias in registry.aliases_of(name):
        spellings += [alias, to_camel(alias)]
    return list(dict.fromkeys(spellings))


def _id_enum(registry) -> dict[str, Any]:
    return {"type": "string", "enum": [s for name in registry.names() for s in id_spellings(registry, name)]}


def _with_camel_keys(node: Any) -> Any:
    """Offer each snake_case key of a closed object also as its camelCase alias."""
    if isinstance(node, list):
        return [_with_camel_keys(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: _with_camel_keys(value) for key, value in node.items()}
    properties = node.get("properties")
    if isinstance(properties, dict) and node.get("type") == "object":
        for key in list(properties):
            camel = to_camel(key)
            if camel != key and camel not in properties:
                properties[camel] = properties[key]
        required = node.get("required", [])
        plain = [key for key in required if to_camel(key) == key]
        either = [key for key in required if to_camel(key) != key]
        if either:
            node["required"] = plain
            node.setdefault("allOf", []).extend(
                {"anyOf": [{"required": [key]}, {"required": [to_camel(key)]}]} for key in either)
    return node


def _entry_schema(registry, name: str, params_schema: dict[str, Any]) -> dict[str, Any]:
    """`{type: <id>, ...Params}` for one registry entry."""
    schema = dict(params_schema)
    schema["type"] = "object"
    schema["properties"] = {"type": {"enum": id_spellings(registry, name)}, **schema.get("properties", {})}
    schema["required"] = ["type", *schema.get("required", [])]
    schema["additionalProperties"] = False
    schema.pop("title", None)
    schema["title"] = f"{registry.kind} {name}"
    return schema


def config_json_schema(registries: Registries | None = None) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a trainctl config file."""
    registries = registries or default_registries()
    typed = {"layers": registries.layers, "optimizers": registries.optimizers, "callbacks": registries.callbacks}
    entries: list[tuple[str, str, type[BaseModel]]] = []
    for section, registry in typed.items():
        for name in registry.names():
            params = getattr(registry.get(name), "Params", None) or NoParams
            entries.append((section, name, params))
    models = [(params, "validation") for _, _, params in entries] + \
        [(FitConfig, "validation"), (registries.data_model, "validation")]
    mapping, top = models_json_schema(list(dict.fromkeys(models)), by_alias=False,
                                      ref_template="#/$defs/{model}")
    defs = top.get("$defs", {})

    def resolved(model: type[BaseModel]) -> dict[str, Any]:
        schema = mapping[(model, "validation")]
        if "$ref" in schema:
            schema = defs[schema["$ref"].split("/")[-1]]
        return schema

    choices: dict[str, list[dict[str, Any]]] = {section: [] for section in typed}
    for section, name, params in entries:
        choices[section].append(_entry_schema(typed[section], name, resolved(params)))

    def typed_value(section: str) -> dict[str, Any]:
        return {"anyOf": [_id_enum(typed[section]), *choices[section]]}

    schema = {
        "$schema": SCHEMA_DIALECT,
        "title": "trainctl config",
        "description": "A trainctl training config (trainctl validate checks it fully).",
        "type": "object",
        "additionalProperties": False,
        "required": ["name", "model", "optimizer", "loss", "data"],
        "properties": {
            "name": {"type": "string", "pattern": _NAME.pattern,
                     "description": "names the run directory (runs/<name>/<timestamp>)"},
            "seed": {"type": "integer", "minimum": 0, "default": 0,
                     "description": "drives initializers, shuffling, dropout and generators"},
            "model": {"type": "object", "additionalProperties": False, "required": ["layers"],
                      "properties": {"layers": {"type": "array", "minItems": 1,
                                                "items": {"anyOf": choices["layers"]}}}},
            "optimizer": typed_value("optimizers"),
            "loss": _id_enum(registries.losses),
            "metrics": {"type": "array", "items": _id_enum(registries.metrics), "default": []},
            "data": {"$ref": mapping[(registries.data_model, "validation")]["$ref"]}
            if "$ref" in mapping[(registries.data_model, "validation")] else resolved(registries.data_model),
            "fit": {"$ref": mapping[(FitConfig, "validation")]["$ref"]},
            "callbacks": {"type": "array", "items": typed_value("callbacks"), "default": []},
        },
        "$defs": defs,
    }
    return _with_camel_keys(_short_def_names(schema))


def _short_def_names(schema: dict[str, Any]) -> dict[str, Any]:
    """`trainctl__nn__layers__core__Dense__Params` -> `DenseParams` (pydantic's long names
    only disambiguate the many nested classes called Params)."""
    import json

    renames = {}
    for name in schema["$defs"]:
        if "__" in name:
            parts = name.split("__")
            renames[name] = "".join(parts[-2:]) if parts[-1] == "Params" else parts[-1]
    if len(set(renames.values()) | (set(schema["$defs"]) - set(renames))) != len(schema["$defs"]):
        return schema  # a short name would collide: keep pydantic's
    text = json.dumps(schema)
    for old, new in renames.items():
        text = text.replace(f'"#/$defs/{old}"', f'"#/$defs/{new}"')
    schema = json.loads(text)
    schema["$defs"] = dict(sorted((renames.get(name, name), value) for name, value in schema["$defs"].items()))
    return schema  # definitions sorted: the file does not change when modules move
