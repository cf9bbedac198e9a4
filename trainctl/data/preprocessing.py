"""Preprocessing steps: fitted on the training split only, then applied to every split.

    state = fit_preprocessing(steps, x_train, y_train)   # statistics from train only
    x = apply_preprocessing(state, x)                    # any split, predict, evaluate
    y = apply_target_preprocessing(state, y)             # one_hot on class indices
    arrays = state.to_arrays()                           # save with the run ...
    state = PreprocessingState.from_arrays(steps, arrays)  # ... and load it back

Statistics are accumulated over row blocks in float64, so a memory-mapped or streamed
training set is never copied whole.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from trainctl.data.config import PREPROCESSING_CONFIGS, Flatten, MinMax, OneHot, Rescale, Reshape, Standardize
from trainctl.errors import DataError

X_STEPS = ("standardize", "min_max", "rescale", "flatten", "reshape")
Y_STEPS = ("one_hot",)
BLOCK_ROWS = 65536


@dataclass
class PreprocessingState:
    """The steps and, per step, its fitted statistics (name → array)."""

    steps: list[Any]
    stats: list[dict[str, np.ndarray]] = field(default_factory=list)
    tabular: Any = None  # a fitted trainctl.data.tabular.TabularEncoder (categorical columns, fills), or None
    target_steps: list[Any] = field(default_factory=list)  # target_preprocessing (standardize), undone by predict
    target_stats: list[dict[str, np.ndarray]] = field(default_factory=list)
    input_width: int | None = None  # feature columns the raw input has (before tabular encoding and steps)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Flat name → array map for saving: `preprocessing.0.standardize/mean`, ...,
        `target_preprocessing.0.standardize/mean`."""
        arrays = {
            f"preprocessing.{i}.{step.type}/{name}": value
            for i, (step, stats) in enumerate(zip(self.steps, self.stats))
            for name, value in stats.items()
        }
        arrays.update({
            f"target_preprocessing.{i}.{step.type}/{name}": value
            for i, (step, stats) in enumerate(zip(self.target_steps, self.target_stats))
            for name, value in stats.items()
        })
        return arrays

    @classmethod
    def from_arrays(cls, steps: list[Any], arrays: dict[str, np.ndarray], target_steps: list[Any] = ()) -> "PreprocessingState":
        state = cls._from_arrays(steps, arrays)
        target_steps = list(target_steps)
        target = cls._from_arrays(target_steps, {k[len("target_"):]: v for k, v in arrays.items() if k.startswith("target_preprocessing.")})
        state.target_steps, state.target_stats = target_steps, target.stats
        return state

    @classmethod
    def _from_arrays(cls, steps: list[Any], arrays: dict[str, np.ndarray]) -> "PreprocessingState":
        stats: list[dict[str, np.ndarray]] = [{} for _ in steps]
        for key, value in arrays.items():
            if not key.startswith("preprocessing."):
                continue
            index, rest = key[len("preprocessing.") :].split(".", 1)
            step_type, name = rest.split("/", 1)
            i = int(index)
            if i >= len(steps) or steps[i].type != step_type:
                raise DataError(f"saved preprocessing statistics {key!r} do not match the config's steps")
            stats[i][name] = np.asarray(value)
        for i, step in enumerate(steps):
            missing = [name for name in _STAT_NAMES[step.type] if name not in stats[i]]
            if missing:
                raise DataError(f"saved preprocessing is missing {step.type} statistic {missing[0]!r} (step {i})")
        return cls(list(steps), stats)

    def x_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """Per-sample x shape after the steps."""
        for step in self.steps:
            shape = _shape_after(step, shape)
        return shape

    def y_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        for step, stats in zip(self.steps, self.stats):
            if step.type == "one_hot":
                shape = (int(stats["num_classes"]),)
        return shape


_STAT_NAMES: dict[str, tuple[str, ...]] = {
    "standardize": ("mean", "std"),
    "min_max": ("min", "max"),
    "rescale": (),
    "one_hot": ("num_classes",),
    "flatten": (),
    "reshape": (),
    "random_flip": (),  # augmentation: applied to training batches (data/augmentation.py), not here
    "random_translation": (),
    "random_rotation": (),
    "random_zoom": (),
}
assert set(_STAT_NAMES) == set(PREPROCESSING_CONFIGS)


def _shape_after(step: Any, shape: tuple[int, ...]) -> tuple[int, ...]:
    if isinstance(step, Flatten):
        return (int(np.prod(shape, dtype=np.int64)),)
    if isinstance(step, Reshape):
        size, target = int(np.prod(shape, dtype=np.int64)), tuple(step.target_shape)
        if int(np.prod(target, dtype=np.int64)) != size:
            raise DataError(
                f"preprocessing reshape to {list(target)} needs {int(np.prod(target))} values per sample, "
                f"but samples have shape {list(shape)} ({size} values)"
            )
        return target
    return shape


def _blocks(x: np.ndarray) -> Iterator[np.ndarray]:
    for start in range(0, len(x), BLOCK_ROWS):
        yield x[start : start + BLOCK_ROWS]


def fit_preprocessing(
    steps: list[Any],
    x: np.ndarray | Callable[[], Iterable[np.ndarray]],
    y: np.ndarray | None = None,
    n_classes: int | None = None,
) -> PreprocessingState:
    """Fit every step on the training data. `x` is [n, ...] or a callable giving a fresh
    iterator of x row blocks (for streams); `y` holds class indices [n, 1] when one_hot is
    used without num_classes (or pass `n_classes`)."""
    blocks: Callable[[], Iterable[np.ndarray]] = x if callable(x) else (lambda: _blocks(x))  # type: ignore[assignment]
    state = PreprocessingState(list(steps), [])
    for i, step in enumerate(steps):
        previous = PreprocessingState(state.steps[:i], state.stats)

        def transformed() -> Iterator[np.ndarray]:
            for block in blocks():
                yield apply_preprocessing(previous, block)

        if isinstance(step, Standardize):
            mean, var, count = _moments(transformed())
            std = np.maximum(np.sqrt(var), step.epsilon)
            state.stats.append({"mean": mean.astype(np.float32), "std": std.astype(np.float32)})
        elif isinstance(step, MinMax):
            low, high = _extremes(transformed())
            state.stats.append({"min": low.astype(np.float32), "max": high.astype(np.float32)})
        elif isinstance(step, OneHot):
            k = step.num_classes or n_classes
            if k is None:
                if y is None:
                    raise DataError("preprocessing one_hot: no class labels to count; set num_classes")
                k = int(np.max(y)) + 1 if len(y) else 0
            if k < 2:
                raise DataError(f"preprocessing one_hot: found {k} class(es); set num_classes")
            state.stats.append({"num_classes": np.asarray(k, dtype=np.int64)})
        else:
            state.stats.append({})
    return state


def _moments(blocks: Iterable[np.ndarray]) -> tuple[np.ndarray, np.ndarray, int]:
    """Per-feature mean and population variance, merging block statistics (Chan et al.)."""
    count, mean, m2 = 0, None, None
    for block in blocks:
        b = block.astype(np.float64, copy=False)
        n_b = len(b)
        if n_b == 0:
            continue
        mean_b = b.mean(axis=0)
        m2_b = ((b - mean_b) ** 2).sum(axis=0)
        if mean is None:
            count, mean, m2 = n_b, mean_b, m2_b
            continue
        delta = mean_b - mean
        total = count + n_b
        mean = mean + delta * (n_b / total)
        m2 = m2 + m2_b + delta**2 * (count * n_b / total)
        count = total
    if mean is None:
        raise DataError("preprocessing: the training split has no rows")
    return mean, m2 / count, count


def _extremes(blocks: Iterable[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    low = high = None
    for block in blocks:
        if len(block) == 0:
            continue
        b_low, b_high = block.min(axis=0), block.max(axis=0)
        low = b_low if low is None else np.minimum(low, b_low)
        high = b_high if high is None else np.maximum(high, b_high)
    if low is None:
        raise DataError("preprocessing: the training split has no rows")
    return low, high


def apply_preprocessing(state: PreprocessingState, x: np.ndarray) -> np.ndarray:
    """x [n, ...] → preprocessed float32 [n, *state.x_shape(...)]; a new array when any
    step changes values (the input, possibly memory-mapped, is never written)."""
    out = x
    for step, stats in zip(state.steps, state.stats):
        if isinstance(step, Standardize):
            out = (out - stats["mean"]) / stats["std"]
        elif isinstance(step, MinMax):
            span = stats["max"] - stats["min"]
            span = np.where(span > 0, span, 1).astype(np.float32)
            low, high = step.feature_range
            out = (out - stats["min"]) / span * np.float32(high - low) + np.float32(low)
        elif isinstance(step, Rescale):
            out = out * np.float32(step.scale) + np.float32(step.offset)
        elif isinstance(step, (Flatten, Reshape)):
            shape = _shape_after(step, tuple(out.shape[1:]))
            out = np.ascontiguousarray(out).reshape(len(out), *shape)
    return np.ascontiguousarray(out, dtype=np.float32)


def apply_target_preprocessing(state: PreprocessingState, y: np.ndarray) -> np.ndarray:
    """y → targets after the y steps (one_hot: class indices [n] or [n, 1] → [n, k];
    target_preprocessing standardize: (y − mean) / std with the training split's statistics)."""
    out = y
    for step, stats in zip(state.steps, state.stats):
        if isinstance(step, OneHot):
            out = one_hot(out, int(stats["num_classes"]))
    for step, stats in zip(state.target_steps, state.target_stats):
        out = (out.reshape(len(out), -1) - stats["mean"]) / stats["std"]
    return np.ascontiguousarray(out, dtype=np.float32)


def fit_target_preprocessing(state: PreprocessingState, target_steps: list[Any], y: np.ndarray, description: str) -> None:
    """Fit target_preprocessing on the training targets y [n, m] (regression only)."""
    state.target_steps, state.target_stats = list(target_steps), []
    for step in target_steps:
        mean, var, _ = _moments(_blocks(np.asarray(y).reshape(len(y), -1)))
        state.target_stats.append({"mean": mean.astype(np.float32), "std": np.maximum(np.sqrt(var), step.epsilon).astype(np.float32)})


def invert_target_preprocessing(state: PreprocessingState, y: np.ndarray) -> np.ndarray:
    """Model outputs in the scaled target space → the target's own units (predict)."""
    out = np.asarray(y, dtype=np.float64)
    for step, stats in reversed(list(zip(state.target_steps, state.target_stats))):
        out = out * stats["std"].astype(np.float64) + stats["mean"].astype(np.float64)
    return out.astype(np.float32) if state.target_steps else np.asarray(y)


def one_hot(indices: np.ndarray, n_classes: int, shown: str = "targets") -> np.ndarray:
    """Class indices [n] or [n, 1] → one-hot float32 [n, n_classes]."""
    flat = np.asarray(indices)
    if flat.ndim == 2 and flat.shape[1] == 1:
        flat = flat[:, 0]
    if flat.ndim != 1:
        raise DataError(f"{shown}: one_hot expects class indices [n] or [n, 1], got shape {list(np.shape(indices))}")
    as_int = flat.astype(np.int64)
    bad = np.flatnonzero((as_int != flat) | (as_int < 0) | (as_int >= n_classes))
    if bad.size:
        raise DataError(f"{shown}: row {int(bad[0]) + 1}: label {flat[bad[0]]!r} is not a class index in [0, {n_classes})")
    out = np.zeros((len(flat), n_classes), dtype=np.float32)
    out[np.arange(len(flat)), as_int] = 1.0
    return out
