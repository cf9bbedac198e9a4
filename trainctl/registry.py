"""String ids → classes. Config values are only ever looked up here, never imported as paths.

Ids are snake_case; the TF.js camelCase spelling of an id is accepted too
(`categoricalCrossentropy` → `categorical_crossentropy`, `glorotUniform` → `glorot_uniform`).
"""

from __future__ import annotations

import difflib
import re
from typing import Callable, Generic, TypeVar

from trainctl.errors import TrainctlError

T = TypeVar("T")

_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


def snake_case(name: str) -> str:
    """`glorotUniform` → `glorot_uniform`, `relu6` → `relu6`, `MSE` → `mse`, `l1l2` → `l1l2`."""
    return _CAMEL_BOUNDARY.sub("_", name.strip()).replace("-", "_").lower()


def did_you_mean(name: str, choices: list[str]) -> str | None:
    """The closest valid choice to a misspelled `name`, or None when nothing is close."""
    matches = difflib.get_close_matches(snake_case(name), choices, n=1, cutoff=0.6)
    return matches[0] if matches else None


class UnknownIdError(TrainctlError):
    def __init__(self, kind: str, name: str, choices: list[str]):
        self.kind, self.name, self.choices = kind, name, choices
        hint = did_you_mean(name, choices)
        message = f"unknown {kind} {name!r}"
        message += f"; did you mean {hint!r}?" if hint else f"; valid: {', '.join(choices)}"
        super().__init__(message)


class Registry(Generic[T]):
    """A named table of ids. `register` adds one under its id and any extra aliases."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._aliases: dict[str, str] = {}
        self._modules: dict[str, str] = {}  # id or alias -> the module that registers it (load_on_demand)

    def load_on_demand(self, modules: dict[str, tuple[str, ...]]) -> None:
        """Entries registered by importing their module, imported when an id of theirs is
        first looked up (`modules`: module name -> the ids and aliases it registers); names()
        and aliases_of() import them all. A config names a few of the entries, so importing
        every module up front was start-up time spent on the rest."""
        self._modules.update({snake_case(name): module for module, names in modules.items() for name in names})

    def _load(self, key: str) -> None:
        import importlib

        module = self._modules.get(key)
        if module is not None and key not in self._entries and key not in self._aliases:
            importlib.import_module(module)

    def _load_all(self) -> None:
        import importlib

        for module in sorted(set(self._modules.values())):
            importlib.import_module(module)

    def register(self, name: str, *aliases: str) -> Callable[[T], T]:
        def add(entry: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} registered twice")
            self._entries[name] = entry
            for alias in aliases:
                self._aliases[snake_case(alias)] = name
            return entry

        return add

    def register_type(self, name: str, *aliases: str) -> Callable[[T], T]:
        """`register` for a class that carries its own id: sets `type_id` to `name` too."""
        def add(entry: T) -> T:
            entry.type_id = name
            return self.register(name, *aliases)(entry)

        return add

    def resolve(self, name: str) -> str:
        """The canonical id for `name` (any accepted spelling); UnknownIdError otherwise."""
        if not isinstance(name, str):
            raise UnknownIdError(self.kind, str(name), self.names())
        key = snake_case(name)
        self._load(key)
        if key in self._entries:
            return key
        if key in self._aliases:
            return self._aliases[key]
        raise UnknownIdError(self.kind, name, self.names())

    def get(self, name: str) -> T:
        return self._entries[self.resolve(name)]

    def names(self) -> list[str]:
        self._load_all()
        return sorted(self._entries)

    def aliases_of(self, name: str) -> list[str]:
        """The extra ids registered for canonical `name` (snake_case), e.g. `acc` for accuracy."""
        self._load_all()
        return [alias for alias, target in self._aliases.items() if target == name]

    def __contains__(self, name: object) -> bool:
        try:
            self.resolve(name)  # type: ignore[arg-type]
        except UnknownIdError:
            return False
        return True
