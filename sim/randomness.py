"""Seeded randomness: one SeedSequence root per run, one independent stream per agent and per component.

Streams are keyed by identity (domain, key), not by creation order, so adding an agent does not change the
draws of any other agent or component. Nothing in flmarket uses the global `random` or `np.random` state.

Each stream is a PCG64 seeded from its SeedSequence exactly as `np.random.default_rng(sequence)` seeds it, so its
draws are the same; but the bit generator keeps a reference to the factory's one `_SeedWords`, not to its own
SeedSequence. That saves 370 bytes a generator (a SeedSequence and its entropy pool), which matters for a
population of 100,000 providers each with its own stream; the price is that `Generator.spawn` is not available on
these streams (nothing in flmarket spawns from them; numpy says so if something tries).
"""

from __future__ import annotations

import zlib

import numpy as np
from numpy.random.bit_generator import ISeedSequence

DOMAINS = {"component": 0, "provider": 1, "requester": 2, "committee": 3}


class _SeedWords(ISeedSequence):
    """The state words of the stream being made, handed to PCG64 in place of its SeedSequence (which PCG64 would
    keep). One per factory, refilled for each stream: a run makes its streams on one thread."""

    __slots__ = ("words",)

    def __init__(self) -> None:
        self.words = np.zeros(4, dtype=np.uint64)

    def generate_state(self, n_words: int, dtype: type = np.uint32) -> np.ndarray:
        """The words PCG64 asks for when it is seeded (four 64-bit words)."""
        if n_words != len(self.words) or np.dtype(dtype) != self.words.dtype:
            raise ValueError(f"seed words: PCG64 asks for 4 uint64 words, got a request for {n_words} {dtype}")
        return self.words


class RandomStreams:
    """Factory of independent `numpy.random.Generator`s derived from the scenario seed."""

    def __init__(self, seed: int) -> None:
        if seed < 0:
            raise ValueError(f"seed: must be >= 0, got {seed}")
        self.seed = seed
        self._words = _SeedWords()

    def sequence(self, domain: str, key: int | str) -> np.random.SeedSequence:
        """The SeedSequence of (domain, key); string keys are hashed with CRC-32 (stable across runs)."""
        if domain not in DOMAINS:
            raise ValueError(f"domain: must be one of {', '.join(DOMAINS)}, got {domain!r}")
        numeric = zlib.crc32(key.encode()) if isinstance(key, str) else int(key)
        return np.random.SeedSequence(self.seed, spawn_key=(DOMAINS[domain], numeric))

    def generator(self, domain: str, key: int | str) -> np.random.Generator:
        """A fresh generator for (domain, key): the stream `np.random.default_rng(self.sequence(domain, key))`
        gives, without a SeedSequence kept alive beside it (see the module's docstring)."""
        self._words.words = self.sequence(domain, key).generate_state(4, np.uint64)
        return np.random.Generator(np.random.PCG64(self._words))

    def component(self, name: str) -> np.random.Generator:
        """The generator of a named model component (e.g. "network", "requester_arrivals")."""
        return self.generator("component", name)
