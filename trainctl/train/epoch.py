"""The epoch's running sums: one accumulator for the fit loop, evaluation and the display.

An epoch's logged value is the size-weighted mean of its batch values (TF.js BaseLogger):
`total[i] += value * n` in float64, in batch order, divided by the samples seen. The fit loop
owns one accumulator; a checkpoint taken in the middle of an epoch saves its state, so the
resumed epoch logs exactly what an uninterrupted one logs.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence


class EpochAccumulator:
    """Size-weighted sums of `keys` over the batches of one epoch (or one evaluation pass)."""

    def __init__(self, keys: Sequence[str] = ()):
        self.keys = tuple(keys)
        self.reset()

    def reset(self, keys: Sequence[str] | None = None) -> None:
        if keys is not None:
            self.keys = tuple(keys)
        self.totals = [0.0] * len(self.keys)
        self.seen = 0

    def add(self, values: Iterable[float], n: int) -> None:
        """One batch: its values (in `keys` order) and its number of samples."""
        totals = self.totals
        for i, value in enumerate(values):
            totals[i] += value * n
        self.seen += n

    def means(self) -> dict[str, float]:
        """The mean of each key so far (0.0 before the first batch)."""
        seen = max(self.seen, 1)
        return {key: total / seen for key, total in zip(self.keys, self.totals)}

    # -- checkpoints
    def get_state(self) -> dict[str, Any]:
        return {"totals": list(self.totals), "seen": self.seen}

    def set_state(self, state: dict[str, Any]) -> None:
        self.totals, self.seen = [float(t) for t in state["totals"]], int(state["seen"])
