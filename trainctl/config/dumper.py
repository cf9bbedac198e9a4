"""YAML out: the saved config of a run (config.yaml) in block style, short lists inline,
keys in their given order, through yaml.SafeDumper only."""

from __future__ import annotations

from typing import Any

import yaml

from trainctl.config.loader import YAML_TAG, Yaml12Resolver


class ConfigYamlDumper(yaml.SafeDumper):
    """Writes YAML that both YAML 1.1 readers and our 1.2 loader read back identically:
    a string that either would resolve to a non-string is quoted."""

    yaml_implicit_resolvers = {
        first: list(resolvers) for first, resolvers in yaml.SafeDumper.yaml_implicit_resolvers.items()
    }


for _first, _resolvers in Yaml12Resolver.yaml_implicit_resolvers.items():
    ConfigYamlDumper.yaml_implicit_resolvers.setdefault(_first, []).extend(_resolvers)


def _represent_list(dumper: yaml.SafeDumper, items: list) -> yaml.Node:
    flow = all(isinstance(item, (int, float, str, bool, type(None))) for item in items)
    flow = flow and sum(len(str(item)) for item in items) < 60
    return dumper.represent_sequence(YAML_TAG + "seq", items, flow_style=flow)


ConfigYamlDumper.add_representer(list, _represent_list)
ConfigYamlDumper.add_representer(tuple, _represent_list)


def dump_yaml(data: Any) -> str:
    return yaml.dump(data, Dumper=ConfigYamlDumper, sort_keys=False, allow_unicode=True,
                     default_flow_style=False)
