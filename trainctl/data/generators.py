"""Seeded synthetic datasets of any size, one function per generator id.

Each generator returns (x [n, ...] float32, y [n, ...] float32 or class indices [n] int64,
n_classes or None). Samples are drawn from rng_for(seed, "data", split, id, ...), so train
and validation differ; the ground truth (teacher network, blob centres) is drawn from
rng_for(seed, "data", id, "truth"), so train and validation share it.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from trainctl.data.generator_params import (
    AddingProblemGenerator,
    BlobsGenerator,
    CirclesGenerator,
    LinearGenerator,
    MoonsGenerator,
    PolynomialGenerator,
    RandomNormalGenerator,
    RandomUniformGenerator,
    SineGenerator,
    SpiralsGenerator,
    TeacherGenerator,
    TokenSequencesGenerator,
    TimeSeriesGenerator,
    XorGenerator,
)
from trainctl.registry import Registry
from trainctl.seeding import rng_for

Generated = tuple[np.ndarray, np.ndarray, "int | None"]
GENERATORS: Registry[Callable[..., Generated]] = Registry("generator")


def generator(name: str, params: type):
    """Register a generator function under `name` with its options model (`fn.Params`), so the
    config resolves `{generator: name, ...}` through the registry like every other id."""
    def add(fn):
        fn.Params = params
        return GENERATORS.register(name)(fn)

    return add


def _rng(seed: int, split: str, name: str, part: str) -> np.random.Generator:
    return rng_for(seed, "data", split, name, part)


def _truth(seed: int, name: str) -> np.random.Generator:
    return rng_for(seed, "data", name, "truth")


def _f32(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float32)


def _random_pair(cfg: RandomNormalGenerator | RandomUniformGenerator, seed: int, split: str, name: str,
                 draw: Callable[[np.random.Generator, tuple[int, ...]], np.ndarray]) -> Generated:
    """x and y drawn independently (a stream each) by `draw(rng, shape)`: a noise baseline."""
    n = cfg.n_samples
    x = draw(_rng(seed, split, name, "x"), (n, *cfg.shape))
    y = draw(_rng(seed, split, name, "y"), (n, *cfg.target_shape))
    return _f32(x), _f32(y), None


@generator("random_normal", RandomNormalGenerator)
def random_normal(cfg: RandomNormalGenerator, seed: int, split: str) -> Generated:
    return _random_pair(cfg, seed, split, "random_normal", lambda rng, shape: rng.normal(cfg.mean, cfg.stddev, shape))


@generator("random_uniform", RandomUniformGenerator)
def random_uniform(cfg: RandomUniformGenerator, seed: int, split: str) -> Generated:
    return _random_pair(cfg, seed, split, "random_uniform",
                        lambda rng, shape: rng.uniform(cfg.minval, cfg.maxval, shape))


@generator("linear", LinearGenerator)
def linear(cfg: LinearGenerator, seed: int, split: str) -> Generated:
    n = cfg.n_samples
    if isinstance(cfg.true_w, list):
        w = np.asarray(cfg.true_w, dtype=np.float64)
        x = _rng(seed, split, "linear", "x").uniform(cfg.x_min, cfg.x_max, (n, w.size))
        y = x @ w + cfg.true_b
    else:
        x = np.linspace(cfg.x_min, cfg.x_max, n)[:, None]
        y = x[:, 0] * cfg.true_w + cfg.true_b
    y = y + _rng(seed, split, "linear", "noise").normal(0.0, 1.0, n) * cfg.noise
    return _f32(x), _f32(y[:, None]), None


@generator("polynomial", PolynomialGenerator)
def polynomial(cfg: PolynomialGenerator, seed: int, split: str) -> Generated:
    n = cfg.n_samples
    x = _rng(seed, split, "polynomial", "x").uniform(cfg.x_min, cfg.x_max, n)
    y = np.polynomial.polynomial.polyval(x, cfg.coefficients)
    y = y + _rng(seed, split, "polynomial", "noise").normal(0.0, 1.0, n) * cfg.noise
    return _f32(x[:, None]), _f32(y[:, None]), None


@generator("sine", SineGenerator)
def sine(cfg: SineGenerator, seed: int, split: str) -> Generated:
    n = cfg.n_samples
    x = _rng(seed, split, "sine", "x").uniform(cfg.x_min, cfg.x_max, n)
    y = cfg.amplitude * np.sin(cfg.frequency * x + cfg.phase)
    y = y + _rng(seed, split, "sine", "noise").normal(0.0, 1.0, n) * cfg.noise
    return _f32(x[:, None]), _f32(y[:, None]), None


def _balanced_labels(n: int, n_classes: int, rng: np.random.Generator) -> np.ndarray:
    """Class indices with counts as equal as possible, in random order."""
    return rng.permutation(np.arange(n) % n_classes).astype(np.int64)


@generator("blobs", BlobsGenerator)
def blobs(cfg: BlobsGenerator, seed: int, split: str) -> Generated:
    low, high = cfg.center_box
    centers = _truth(seed, "blobs").uniform(low, high, (cfg.n_classes, cfg.n_features))
    labels = _balanced_labels(cfg.n_samples, cfg.n_classes, _rng(seed, split, "blobs", "labels"))
    noise = _rng(seed, split, "blobs", "x").normal(0.0, cfg.cluster_std, (cfg.n_samples, cfg.n_features))
    return _f32(centers[labels] + noise), labels, cfg.n_classes


@generator("moons", MoonsGenerator)
def moons(cfg: MoonsGenerator, seed: int, split: str) -> Generated:
    labels = _balanced_labels(cfg.n_samples, 2, _rng(seed, split, "moons", "labels"))
    t = _rng(seed, split, "moons", "t").uniform(0.0, math.pi, cfg.n_samples)
    outer = np.stack([np.cos(t), np.sin(t)], axis=1)
    inner = np.stack([1.0 - np.cos(t), 0.5 - np.sin(t)], axis=1)
    x = np.where(labels[:, None] == 0, outer, inner)
    x = x + _rng(seed, split, "moons", "noise").normal(0.0, 1.0, x.shape) * cfg.noise
    return _f32(x), labels, 2


@generator("circles", CirclesGenerator)
def circles(cfg: CirclesGenerator, seed: int, split: str) -> Generated:
    labels = _balanced_labels(cfg.n_samples, 2, _rng(seed, split, "circles", "labels"))
    t = _rng(seed, split, "circles", "t").uniform(0.0, 2.0 * math.pi, cfg.n_samples)
    radius = np.where(labels == 0, 1.0, cfg.factor)  # class 1 is the inner circle, as sklearn
    x = np.stack([np.cos(t), np.sin(t)], axis=1) * radius[:, None]
    x = x + _rng(seed, split, "circles", "noise").normal(0.0, 1.0, x.shape) * cfg.noise
    return _f32(x), labels, 2


@generator("spirals", SpiralsGenerator)
def spirals(cfg: SpiralsGenerator, seed: int, split: str) -> Generated:
    k = cfg.n_classes
    labels = _balanced_labels(cfg.n_samples, k, _rng(seed, split, "spirals", "labels"))
    r = _rng(seed, split, "spirals", "r").uniform(0.0, 1.0, cfg.n_samples)
    angle = r * cfg.turns * 2.0 * math.pi + labels * (2.0 * math.pi / k)
    x = np.stack([r * np.sin(angle), r * np.cos(angle)], axis=1)
    x = x + _rng(seed, split, "spirals", "noise").normal(0.0, 1.0, x.shape) * cfg.noise * 0.1
    return _f32(x), labels, k


@generator("xor", XorGenerator)
def xor(cfg: XorGenerator, seed: int, split: str) -> Generated:
    x = _rng(seed, split, "xor", "x").uniform(-1.0, 1.0, (cfg.n_samples, 2))
    labels = ((x[:, 0] > 0) != (x[:, 1] > 0)).astype(np.int64)
    x = x + _rng(seed, split, "xor", "noise").normal(0.0, 1.0, x.shape) * cfg.noise
    return _f32(x), labels, 2


@generator("teacher", TeacherGenerator)
def teacher(cfg: TeacherGenerator, seed: int, split: str) -> Generated:
    truth = _truth(seed, "teacher")
    w1 = truth.normal(0.0, 1.0 / math.sqrt(cfg.n_features), (cfg.n_features, cfg.hidden))
    w2 = truth.normal(0.0, 1.0, (cfg.hidden, cfg.n_classes))
    # Centre the logits on a reference sample so no class is left (nearly) empty.
    reference = truth.standard_normal((2048, cfg.n_features))
    b2 = -(np.tanh(reference @ w1) @ w2).mean(axis=0)
    rng = _rng(seed, split, "teacher", "x")
    x = np.empty((cfg.n_samples, cfg.n_features), dtype=np.float32)
    labels = np.empty(cfg.n_samples, dtype=np.int64)
    step = max(1, 4_000_000 // cfg.n_features)  # bounded temporaries for huge n_samples
    for start in range(0, cfg.n_samples, step):
        stop = min(cfg.n_samples, start + step)
        block = rng.standard_normal((stop - start, cfg.n_features), dtype=np.float32)
        x[start:stop] = block
        labels[start:stop] = np.argmax(np.tanh(block @ w1) @ w2 + b2, axis=1)
    return x, labels, cfg.n_classes


@generator("token_sequences", TokenSequencesGenerator)
def token_sequences(cfg: TokenSequencesGenerator, seed: int, split: str) -> Generated:
    # class scores per token, centred per class so that every class wins about equally often
    scores = _truth(seed, "token_sequences").standard_normal((cfg.vocab_size, cfg.n_classes))
    scores -= scores[1:].mean(axis=0)
    scores[0] = 0.0  # padding carries no evidence
    n, length = cfg.n_samples, cfg.length
    tokens = _rng(seed, split, "token_sequences", "tokens").integers(1, cfg.vocab_size, (n, length))
    if cfg.min_length is not None and cfg.min_length < length:
        lengths = _rng(seed, split, "token_sequences", "lengths").integers(cfg.min_length, length + 1, n)
        tokens[np.arange(length)[None, :] >= lengths[:, None]] = 0
    labels = np.argmax(scores[tokens].sum(axis=1), axis=1).astype(np.int64)
    return _f32(tokens), labels, cfg.n_classes


@generator("time_series", TimeSeriesGenerator)
def time_series(cfg: TimeSeriesGenerator, seed: int, split: str) -> Generated:
    # one series per split, long enough for n_samples overlapping windows
    length = cfg.n_samples + cfg.window + cfg.horizon - 1
    rng = _rng(seed, split, "time_series", cfg.kind)
    if cfg.kind == "sine":
        t = np.arange(length, dtype=np.float64)
        phase = rng.uniform(0.0, 2.0 * math.pi, 2)
        series = np.sin(2 * math.pi * t / cfg.period + phase[0]) + 0.5 * np.sin(2 * math.pi * t * 2.7 / cfg.period + phase[1])
        series += rng.normal(0.0, cfg.noise, length)
    else:
        noise = rng.normal(0.0, cfg.noise, length + 100)
        series = np.zeros(length + 100)
        for k in range(2, length + 100):  # burn in 100 steps so the start is stationary
            series[k] = 1.3 * series[k - 1] - 0.6 * series[k - 2] + noise[k] + 0.4 * noise[k - 1]
        series = series[100:]
    windows = np.lib.stride_tricks.sliding_window_view(series, cfg.window + cfg.horizon)[: cfg.n_samples]
    return _f32(windows[:, : cfg.window, None]), _f32(windows[:, cfg.window:]), None


@generator("adding_problem", AddingProblemGenerator)
def adding_problem(cfg: AddingProblemGenerator, seed: int, split: str) -> Generated:
    n, length = cfg.n_samples, cfg.length
    rng = _rng(seed, split, "adding_problem", "x")
    values = rng.uniform(0.0, 1.0, (n, length))
    first = rng.integers(0, length // 2, n)  # one marker in each half, as in the original task
    second = rng.integers(length // 2, length, n)
    markers = np.zeros((n, length))
    markers[np.arange(n), first] = 1.0
    markers[np.arange(n), second] = 1.0
    y = values[np.arange(n), first] + values[np.arange(n), second]
    return _f32(np.stack([values, markers], axis=-1)), _f32(y[:, None]), None


def generate(cfg, seed: int, split: str = "train") -> Generated:
    """(x, y or class indices, n_classes) for a generator config; `split` names the stream."""
    return GENERATORS.get(cfg.generator)(cfg, seed, split)
