"""Small types the data section's option models share: label modes, columns, shapes, ids."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BeforeValidator, Strict

from trainctl.config.base import PositiveInt
from trainctl.registry import snake_case

# How class labels become targets. auto: one-hot for 3+ classes, a single 0/1 column for
# 2 (binary_crossentropy); when the loss is known it decides (sparse_* → sparse indices).
LabelMode = Literal["auto", "one_hot", "sparse", "binary", "none"]
Column = Union[Annotated[int, Strict()], str]  # a column by header name, or by 0-based index (negative from the end)
Shape = list[PositiveInt]


def _snake(value: Any) -> Any:
    return snake_case(value) if isinstance(value, str) else value


def _id(name: str) -> Any:
    """A Literal id field that also accepts the TF.js camelCase spelling (`randomNormal`)."""
    return Annotated[Literal[name], BeforeValidator(_snake)]  # type: ignore[valid-type]
