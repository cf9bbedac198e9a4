"""One config seed drives every random stream: initializers, shuffling, dropout, generators.

Each consumer asks for its own stream by purpose and name, so streams are independent of
the order in which they are requested (adding a layer does not change the data order).
"""

from __future__ import annotations

import zlib

import numpy as np


def _key(part: str | int) -> int:
    return part if isinstance(part, int) else zlib.crc32(part.encode("utf-8"))


def rng_for(seed: int, *purpose: str | int) -> np.random.Generator:
    """A Generator for (seed, purpose...), e.g. rng_for(0, "init", "dense_Dense1/kernel")."""
    sequence = np.random.SeedSequence(entropy=int(seed), spawn_key=tuple(_key(p) for p in purpose))
    return np.random.Generator(np.random.PCG64(sequence))
