"""What agents send each other over the overlay: the `Message` envelope, and the id of "no agent"."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

NO_AGENT = -1
"""The `agent` column of events that belong to no agent (the market, the committee as a whole)."""


@dataclass(frozen=True)
class Message:
    """One message on the overlay. `kind` names the protocol step; `payload` is whatever the protocol needs."""

    kind: str
    sender: int
    payload: Any = None
    size_bytes: int = 256
    message_id: int = field(default=-1, compare=False)
