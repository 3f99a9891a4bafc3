"""The market's ledger (SPEC A.8): hashed, linked blocks of round transactions and Ed25519-signed claims.

A block is {height, prev_hash, hash, timestamp, txs}; its hash is SHA-256 over the canonical encoding
(sorted-key, separator-free JSON of plain types) of everything but the hash itself. A transaction records
one provider's perturbed-update digest, the round's global-model digest, the provider's reward and the local
iterations the committee recommends (gamma). Providers sign their claims M(gamma_i, C_unit) with Ed25519 keys
derived from a seed, so runs are reproducible. Pure: no clock, no files.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from json.encoder import encode_basestring_ascii  # type: ignore[attr-defined]
from typing import Any

import numpy as np
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from flmarket.market.errors import LedgerError
from flmarket.market.records import computed_once

GENESIS_PREV_HASH = "0" * 64
_HEX_DIGEST = re.compile(r"[0-9a-f]{64}")
_BLOCK_FIELDS = ("hash", "height", "prev_hash", "timestamp", "txs")
_TX_FIELDS = ("global_model_digest", "local_iterations", "provider_id", "reward", "update_digest")


# -------------------- encoding and hashing
def canonical_encoding(value: Any) -> bytes:
    """Canonical bytes of a plain value (SPEC A.8): sorted keys, no whitespace, ASCII, no NaN/inf."""
    try:
        text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise LedgerError(f"value: must be plain JSON data (dict, list, str, int, finite float), {error}") from None
    return text.encode("ascii")


def sha256_hex(data: bytes) -> str:
    """SHA-256 of `data` as 64 lowercase hex digits (SPEC A.8)."""
    return hashlib.sha256(data).hexdigest()


def digest_of(value: Any) -> str:
    """SHA-256 hex digest of the canonical encoding of a plain value."""
    return sha256_hex(canonical_encoding(value))


def _require_digest(field_name: str, value: object) -> None:
    if not isinstance(value, str) or not _HEX_DIGEST.fullmatch(value):
        raise LedgerError(f"{field_name}: must be a SHA-256 digest of 64 lowercase hex digits, got {value!r}")


# -------------------- transactions, blocks
@dataclass(frozen=True)
class Transaction:
    """One provider's entry in a round's block (SPEC A.8): update and model digests, reward, gamma."""

    provider_id: str
    update_digest: str
    global_model_digest: str
    reward: float
    local_iterations: int

    def __post_init__(self) -> None:
        if not isinstance(self.provider_id, str) or not self.provider_id:
            raise LedgerError(f"provider_id: must be a non-empty string, got {self.provider_id!r}")
        _require_digest("update_digest", self.update_digest)
        _require_digest("global_model_digest", self.global_model_digest)
        if isinstance(self.reward, bool) or not isinstance(self.reward, int | float) or not math.isfinite(self.reward):
            raise LedgerError(f"reward: must be a finite number, got {self.reward!r}")
        if isinstance(self.local_iterations, bool) or not isinstance(self.local_iterations, int):
            raise LedgerError(f"local_iterations: must be an int, got {self.local_iterations!r}")
        if self.local_iterations < 0:
            raise LedgerError(f"local_iterations: must be >= 0, got {self.local_iterations}")

    def to_plain(self) -> dict[str, Any]:
        """The transaction as plain JSON data (reward as float so encodings are stable)."""
        return {
            "global_model_digest": self.global_model_digest,
            "local_iterations": self.local_iterations,
            "provider_id": self.provider_id,
            "reward": float(self.reward),
            "update_digest": self.update_digest,
        }

    @classmethod
    def from_plain(cls, data: Any, where: str = "tx") -> Transaction:
        """Rebuild a transaction from plain data, naming the field that is missing or malformed."""
        if not isinstance(data, dict) or sorted(data) != list(_TX_FIELDS):
            raise LedgerError(f"{where}: must be an object with fields {_TX_FIELDS}, got {data!r}")
        try:
            return cls(**data)
        except LedgerError as error:
            raise LedgerError(f"{where}.{error}") from None


@dataclass(frozen=True)
class Block:
    """A ledger block (SPEC A.8). Build it with `Block.create`, which computes the hash."""

    height: int
    prev_hash: str
    timestamp: float
    txs: tuple[Transaction, ...]
    hash: str

    @staticmethod
    def content_of(height: int, prev_hash: str, timestamp: float, txs: Sequence[Transaction]) -> dict[str, Any]:
        """The hashed content of a block: every field except the hash, as plain data."""
        return {
            "height": height,
            "prev_hash": prev_hash,
            "timestamp": float(timestamp),
            "txs": [tx.to_plain() for tx in txs],
        }

    @classmethod
    def create(cls, height: int, prev_hash: str, timestamp: float, txs: Iterable[Transaction]) -> Block:
        """A block whose hash is SHA-256 of the canonical encoding of its content (SPEC A.8)."""
        if isinstance(height, bool) or not isinstance(height, int) or height < 0:
            raise LedgerError(f"height: must be an int >= 0, got {height!r}")
        _require_digest("prev_hash", prev_hash)
        if not math.isfinite(timestamp):
            raise LedgerError(f"timestamp: must be finite, got {timestamp}")
        txs = tuple(txs)
        content = canonical_encoding(cls.content_of(height, prev_hash, timestamp, txs))
        block = cls(height=height, prev_hash=prev_hash, timestamp=float(timestamp), txs=txs, hash=sha256_hex(content))
        object.__setattr__(block, "_content_encoding", content)
        return block

    def content_encoding(self) -> bytes:
        """The canonical encoding of the content (every field but the hash), computed once per block: every
        committee member appends, and so re-hashes, the same immutable block. (A changed copy, such as
        `dataclasses.replace(block, txs=...)`, is a new object and is encoded afresh.)"""
        return computed_once(self, "_content_encoding", self._fresh_content_encoding)

    def _fresh_content_encoding(self) -> bytes:
        return canonical_encoding(self.content_of(self.height, self.prev_hash, self.timestamp, self.txs))

    def computed_hash(self) -> str:
        """The hash this block's content should have (differs from `hash` if the block was altered)."""
        return sha256_hex(self.content_encoding())

    def recomputed_hash(self) -> str:
        """The hash of the block's fields as they are now, encoded afresh rather than from the encoding cached
        at creation: what `verify_chain` checks, so a block altered in place (`object.__setattr__` on it or on
        one of its transactions) is caught as well as an altered copy."""
        return sha256_hex(self._fresh_content_encoding())

    def encode(self) -> bytes:
        """The block's canonical encoding, hash included: what is stored and sent. "hash" sorts before every
        content key, so it is the content's encoding with the hash field put first."""
        return b'{"hash":' + canonical_encoding(self.hash) + b"," + self.content_encoding()[1:]

    @classmethod
    def decode(cls, data: bytes) -> Block:
        """Parse an encoded block; raise LedgerError naming what is malformed or not canonical."""
        try:
            plain = json.loads(data.decode("ascii"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise LedgerError(f"encoding: not canonical ASCII JSON ({error})") from None
        if not isinstance(plain, dict) or sorted(plain) != list(_BLOCK_FIELDS):
            keys = sorted(plain) if isinstance(plain, dict) else type(plain).__name__
            raise LedgerError(f"encoding: must be an object with fields {_BLOCK_FIELDS}, got {keys}")
        height, timestamp, txs = plain["height"], plain["timestamp"], plain["txs"]
        if isinstance(height, bool) or not isinstance(height, int):
            raise LedgerError(f"height: must be an int, got {height!r}")
        if isinstance(timestamp, bool) or not isinstance(timestamp, float):
            raise LedgerError(f"timestamp: must be a float, got {timestamp!r}")
        if not isinstance(txs, list):
            raise LedgerError(f"txs: must be a list, got {txs!r}")
        _require_digest("hash", plain["hash"])
        _require_digest("prev_hash", plain["prev_hash"])
        block = cls(
            height=height,
            prev_hash=plain["prev_hash"],
            timestamp=timestamp,
            txs=tuple(Transaction.from_plain(tx, f"txs[{index}]") for index, tx in enumerate(txs)),
            hash=plain["hash"],
        )
        if block.encode() != data:
            raise LedgerError("encoding: parses but is not the canonical encoding of its content")
        return block


# -------------------- the chain
@dataclass(frozen=True)
class ChainProblem:
    """One defect found by `verify_chain`: the block's position, the field at fault and what is wrong."""

    index: int
    field: str
    detail: str


@dataclass(frozen=True)
class ChainReport:
    """The result of verifying a chain: valid iff no problems; `first_bad_index` locates the earliest one."""

    problems: tuple[ChainProblem, ...]

    @property
    def valid(self) -> bool:
        return not self.problems

    @property
    def first_bad_index(self) -> int | None:
        return min((problem.index for problem in self.problems), default=None)


def verify_chain(
    blocks: Sequence[Block], first_height: int = 0, first_prev_hash: str = GENESIS_PREV_HASH
) -> ChainReport:
    """Check heights, hash links and every block's hash against its content (SPEC A.8).

    `first_height` and `first_prev_hash` say where the sequence starts (genesis by default), so a stretch of a
    longer chain, e.g. the blocks read back from a run's event log, can be checked on its own.

    A block whose content was altered fails its own hash check (`field="content"`: height, timestamp or txs
    changed under an unchanged hash); a block whose stored hash was altered fails both its own check and the
    next block's link (`field="hash"`); a broken link alone is reported on `prev_hash`.
    """
    problems: list[ChainProblem] = []
    previous_hash_blamed = False
    for index, block in enumerate(blocks):
        if block.height != first_height + index:
            detail = f"height: expected {first_height + index}, got {block.height}"
            problems.append(ChainProblem(index, "height", detail))
        expected_prev = first_prev_hash if index == 0 else blocks[index - 1].hash
        link_ok = block.prev_hash == expected_prev
        has_next = index + 1 < len(blocks)
        next_links_to_stored_hash = has_next and blocks[index + 1].prev_hash == block.hash
        hash_blamed = False
        if block.recomputed_hash() == block.hash:
            if not link_ok and not previous_hash_blamed:
                detail = f"prev_hash: expected {expected_prev}, got {block.prev_hash}"
                problems.append(ChainProblem(index, "prev_hash", detail))
        elif not link_ok:
            detail = f"prev_hash: altered, expected {expected_prev}, got {block.prev_hash}"
            problems.append(ChainProblem(index, "prev_hash", detail))
        elif has_next and not next_links_to_stored_hash:
            hash_blamed = True
            detail = f"hash: stored {block.hash} matches neither the content nor the next block's link"
            problems.append(ChainProblem(index, "hash", detail))
        elif has_next:
            detail = "content: no longer matches the block hash (height, timestamp or txs altered)"
            problems.append(ChainProblem(index, "content", detail))
        else:
            detail = "content: the head's content or stored hash was altered (the head has no successor to tell)"
            problems.append(ChainProblem(index, "content", detail))
        previous_hash_blamed = hash_blamed
    return ChainReport(tuple(problems))


def verify_encoded_chain(encoded_blocks: Sequence[bytes]) -> ChainReport:
    """Decode stored blocks and verify them; an undecodable block is reported at its position."""
    problems: list[ChainProblem] = []
    decoded: list[Block] = []
    for index, data in enumerate(encoded_blocks):
        try:
            decoded.append(Block.decode(data))
        except LedgerError as error:
            field_name = str(error).split(":", 1)[0]
            problems.append(ChainProblem(index, field_name, str(error)))
    if problems:
        return ChainReport(tuple(problems))
    return verify_chain(decoded)


class Chain:
    """An append-only chain starting at a genesis block with no transactions."""

    def __init__(self, genesis_timestamp: float = 0.0) -> None:
        self._blocks: list[Block] = [Block.create(0, GENESIS_PREV_HASH, genesis_timestamp, ())]

    @property
    def blocks(self) -> tuple[Block, ...]:
        return tuple(self._blocks)

    @property
    def head(self) -> Block:
        return self._blocks[-1]

    def __len__(self) -> int:
        return len(self._blocks)

    def append(self, timestamp: float, txs: Iterable[Transaction]) -> Block:
        """Create the next block over `txs`, linked to the head, and append it."""
        if timestamp < self.head.timestamp:
            raise LedgerError(f"timestamp: must be >= the head's {self.head.timestamp}, got {timestamp}")
        block = Block.create(self.head.height + 1, self.head.hash, timestamp, txs)
        self._blocks.append(block)
        return block

    def append_block(self, block: Block) -> None:
        """Append a block built elsewhere (e.g. decided by the committee) once it links to the head."""
        if block.height != self.head.height + 1:
            raise LedgerError(f"height: must be {self.head.height + 1}, got {block.height}")
        if block.prev_hash != self.head.hash:
            raise LedgerError(f"prev_hash: must be the head's hash {self.head.hash}, got {block.prev_hash}")
        if block.computed_hash() != block.hash:
            raise LedgerError(f"hash: content hashes to {block.computed_hash()}, got {block.hash}")
        self._blocks.append(block)

    def verify(self) -> ChainReport:
        """Check the blocks held: from genesis, or from the oldest kept block once history was forgotten."""
        first = self._blocks[0]
        if first.height == 0:
            return verify_chain(self._blocks)
        return verify_chain(self._blocks, first.height, first.prev_hash)

    @classmethod
    def from_head(cls, head: Block) -> Chain:
        """A replica's chain that starts from an agreed head (state transfer): it can link the next blocks."""
        chain = cls(head.timestamp)
        chain._blocks = [head]
        return chain

    def blocks_after(self, height: int) -> list[Block]:
        """The blocks above `height`, oldest first (what a replica at that height lacks)."""
        first = self._blocks[0].height
        return self._blocks[max(0, height + 1 - first) :]

    def keep_recent(self, count: int = 1) -> None:
        """Keep only the last `count` blocks in memory: a replica needs only its head to link the next block,
        and the full chain lives in the canonical ledger and the event log."""
        if count < 1:
            raise LedgerError(f"count: must be >= 1, got {count}")
        del self._blocks[:-count]


# -------------------- keys and signed claims
def private_key_from_seed(seed_bytes: bytes) -> Ed25519PrivateKey:
    """An Ed25519 key from 32 seed bytes (the same bytes always give the same key)."""
    if len(seed_bytes) != 32:
        raise LedgerError(f"seed_bytes: must be 32 bytes, got {len(seed_bytes)}")
    return Ed25519PrivateKey.from_private_bytes(seed_bytes)


def generate_private_key(rng: np.random.Generator) -> Ed25519PrivateKey:
    """An Ed25519 key from 32 bytes drawn from `rng`: reproducible for a seeded generator."""
    return private_key_from_seed(rng.bytes(32))


def derive_private_key(seed: int, label: str) -> Ed25519PrivateKey:
    """The key of entity `label` in the run with `seed`: SHA-256(seed, label) as the 32 seed bytes."""
    if seed < 0:
        raise LedgerError(f"seed: must be >= 0, got {seed}")
    return private_key_from_seed(hashlib.sha256(f"flmarket-key:{seed}:{label}".encode()).digest())


def public_key_bytes(private_key: Ed25519PrivateKey) -> bytes:
    """The raw 32-byte public key of a private key."""
    return private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def verify_signature(public_key: bytes, signature: bytes, message: bytes) -> bool:
    """True iff `signature` is a valid Ed25519 signature of `message` under the raw `public_key`.

    A pure function of its bytes, so answers are memoised (by a SHA-256 of the three, in a bounded table): the
    replicas of a committee that check the same claim get the same answer, and the simulation pays for one
    Ed25519 verification instead of one per replica.
    """
    # lengths framed, so that no other split of the same bytes into key, signature and message shares the entry
    framed = len(public_key).to_bytes(4, "big") + public_key + len(signature).to_bytes(4, "big") + signature
    key = hashlib.sha256(framed + message).digest()
    known = _VERIFIED.get(key)
    if known is None:
        known = _verify_signature(public_key, signature, message)
        _VERIFIED[key] = known
        if len(_VERIFIED) > _VERIFIED_MAX:
            _VERIFIED.popitem(last=False)
    return known


_VERIFIED: OrderedDict[bytes, bool] = OrderedDict()
_VERIFIED_MAX = 1 << 16


def _verify_signature(public_key: bytes, signature: bytes, message: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


@dataclass(frozen=True)
class ProviderClaim:
    """A provider's claim M(gamma_i, C_unit) for one aggregation round (SPEC A.8, Algorithm 2 input)."""

    provider_id: str
    round_index: int
    local_iterations: int
    unit_cost: float
    update_digest: str

    def __post_init__(self) -> None:
        if not self.provider_id:
            raise LedgerError(f"provider_id: must be a non-empty string, got {self.provider_id!r}")
        if self.round_index < 0:
            raise LedgerError(f"round_index: must be >= 0, got {self.round_index}")
        if self.local_iterations < 0:
            raise LedgerError(f"local_iterations: must be >= 0, got {self.local_iterations}")
        if not math.isfinite(self.unit_cost) or self.unit_cost <= 0:
            raise LedgerError(f"unit_cost: must be finite and > 0, got {self.unit_cost}")
        _require_digest("update_digest", self.update_digest)

    def encode(self) -> bytes:
        """The signed bytes of the claim: its canonical encoding (SPEC A.8); computed once (the provider signs
        them, and the primary and the replicas' shared check verify them).

        Written out field by field, as `canonical_encoding` would write the claim's sorted-key dict (the same
        bytes, tested), because every provider encodes a claim in every round: JSON's integer and float forms
        are `int.__repr__` and `float.__repr__`, and the fields were checked when the claim was made.
        """
        return computed_once(self, "_encoding", self._encode)

    def _encode(self) -> bytes:
        return (
            f'{{"local_iterations":{int(self.local_iterations)!r},'
            f'"provider_id":{encode_basestring_ascii(self.provider_id)},'
            f'"round_index":{int(self.round_index)!r},'
            f'"unit_cost":{float(self.unit_cost)!r},'
            f'"update_digest":"{self.update_digest}"}}'
        ).encode("ascii")

    def digest(self) -> str:
        """SHA-256 of the canonical encoding; computed once (every replica re-checks the binding to it)."""
        return computed_once(self, "_digest", lambda: sha256_hex(self.encode()))


@dataclass(frozen=True)
class SignedClaim:
    """A claim with the provider's Ed25519 signature over its canonical encoding."""

    claim: ProviderClaim
    signature: bytes

    def verify(self, public_key: bytes) -> bool:
        """True iff the signature is the claim's under `public_key` (the key registered for the provider)."""
        return verify_signature(public_key, self.signature, self.claim.encode())


def sign_claim(claim: ProviderClaim, private_key: Ed25519PrivateKey) -> SignedClaim:
    """Sign a provider claim (SPEC A.8: signatures are Ed25519)."""
    return SignedClaim(claim=claim, signature=private_key.sign(claim.encode()))
