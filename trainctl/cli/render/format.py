"""Numbers, shapes, durations and sizes as the terminal shows them."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from rich.text import Text


def format_shape(shape: Iterable[int | None]) -> str:
    """(None, 28, 28, 1) -> "[null,28,28,1]", the way TF.js prints shapes."""
    return "[" + ",".join("null" if dim is None else str(int(dim)) for dim in shape) + "]"


def format_value(value: float) -> str:
    """A loss or metric value: 4 decimals in the everyday range, scientific outside it."""
    value = float(value)
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    magnitude = abs(value)
    if value == 0 or 1e-3 <= magnitude < 1e6:
        return f"{value:.4f}"
    return f"{value:.3e}"


def format_duration(seconds: float) -> str:
    """0.42 -> "0.42s", 12.3 -> "12.3s", 125 -> "2:05", 3725 -> "1:02:05"."""
    if seconds < 1:
        return f"{seconds:.2f}s"
    if seconds < 60:
        return f"{seconds:.1f}s"
    whole = int(round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def format_per_step(seconds: float) -> str:
    """Keras's time per step: 1.2 -> "1s/step", 0.0042 -> "4ms/step", 0.00031 -> "310us/step"."""
    if seconds >= 1:
        return f"{seconds:.0f}s/step"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.0f}ms/step"
    return f"{seconds * 1e6:.0f}us/step"


def wrap_items(head: Text, items: Sequence[tuple[str, str]], width: int, indent: str = "    ") -> Text:
    """`head` then `items` (text, style) two spaces apart on one line when they fit in
    `width`; otherwise the items go on indented lines below, wrapped between items, never
    inside one."""
    line = head.copy()
    together = head.cell_len + sum(2 + len(text) for text, _ in items)
    column = head.cell_len
    if together > width and items:
        line.append("\n" + indent)
        column = len(indent)
    first = True
    for text, style in items:
        if not first and column + 2 + len(text) > width:
            line.append("\n" + indent)
            column = len(indent)
        elif not (first and column == len(indent) and together > width):
            line.append("  ")
            column += 2
        line.append(text, style=style)
        column += len(text)
        first = False
    return line


def human_bytes(n_bytes: int) -> str:
    """101800 -> "99.4 KiB" (binary units)."""
    size = float(n_bytes)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{int(size)} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def human_count(count: float) -> str:
    """50800 -> "50.8K", 1.2e9 -> "1.2G" (decimal units, for FLOPs and throughput)."""
    count = float(count)
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(count) >= scale:
            return f"{count / scale:.1f}{unit}"
    return f"{count:.0f}"


def mean_std(values: Sequence[float]) -> str:
    """"0.1234 ± 0.0056": mean and sample standard deviation (ddof=1); one value alone."""
    values = [float(v) for v in values]
    if not values:
        return "–"
    mean = math.fsum(values) / len(values)
    if len(values) == 1:
        return format_value(mean)
    variance = math.fsum((v - mean) ** 2 for v in values) / (len(values) - 1)
    return f"{format_value(mean)} ± {format_value(math.sqrt(variance))}"
