"""Seeded randomness: one SeedSequence root per run, one independent stream per agent and per component.

Streams are keyed by identity (domain, key), not by creation order, so adding an agent does not change the
draws of any other agent or component. Nothing in flmarket uses the global `random` or `np.random` state.
"""

from __future__ import annotations

import zlib

import numpy as np

DOMAINS = {"component": 0, "provider": 1, "requester": 2, "committee": 3}


class RandomStreams:
    """Factory of independent `numpy.random.Generator`s derived from the scenario seed."""

    def __init__(self, seed: int) -> None:
        if seed < 0:
            raise ValueError(f"seed: must be >= 0, got {seed}")
        self.seed = seed

    def sequence(self, domain: str, key: int | str) -> np.random.SeedSequence:
        """The SeedSequence of (domain, key); string keys are hashed with CRC-32 (stable across runs)."""
        if domain not in DOMAINS:
            raise ValueError(f"domain: must be one of {', '.join(DOMAINS)}, got {domain!r}")
        numeric = zlib.crc32(key.encode()) if isinstance(key, str) else int(key)
        return np.random.SeedSequence(self.seed, spawn_key=(DOMAINS[domain], numeric))

    def generator(self, domain: str, key: int | str) -> np.random.Generator:
        """A fresh generator for (domain, key)."""
        return np.random.default_rng(self.sequence(domain, key))

    def component(self, name: str) -> np.random.Generator:
        """The generator of a named model component (e.g. "network", "requester_arrivals")."""
        return self.generator("component", name)
