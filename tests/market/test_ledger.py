"""Tests for market/ledger.py: canonical encoding, tamper detection and location, Ed25519 claims."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from flmarket.market.ledger import (
    GENESIS_PREV_HASH,
    Block,
    Chain,
    LedgerError,
    ProviderClaim,
    Transaction,
    canonical_encoding,
    derive_private_key,
    generate_private_key,
    public_key_bytes,
    sha256_hex,
    sign_claim,
    verify_chain,
    verify_encoded_chain,
)


def digest(label: str) -> str:
    return sha256_hex(label.encode())


def build_chain(blocks: int = 4, txs_per_block: int = 2) -> Chain:
    chain = Chain(genesis_timestamp=0.0)
    for height in range(1, blocks):
        txs = [
            Transaction(f"p{index}", digest(f"u{height}.{index}"), digest(f"g{height}"), 1.25 * index, 2)
            for index in range(txs_per_block)
        ]
        chain.append(float(height), txs)
    return chain


def test_canonical_encoding_and_sha256_known_values() -> None:
    assert canonical_encoding({"b": 1, "a": [1.5, "x"]}) == b'{"a":[1.5,"x"],"b":1}'
    # FIPS 180-2 test vector for SHA-256("abc").
    assert sha256_hex(b"abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    with pytest.raises(LedgerError, match="value: must be plain JSON"):
        canonical_encoding({"x": float("nan")})


def test_block_hash_covers_content_and_links() -> None:
    chain = build_chain()
    blocks = chain.blocks
    assert blocks[0].prev_hash == GENESIS_PREV_HASH
    assert all(blocks[i].prev_hash == blocks[i - 1].hash for i in range(1, len(blocks)))
    assert chain.verify().valid
    encoded = blocks[1].encode()
    assert Block.decode(encoded) == blocks[1]
    content = {key: value for key, value in __import__("json").loads(encoded).items() if key != "hash"}
    assert blocks[1].hash == sha256_hex(canonical_encoding(content))


def test_a_block_is_encoded_once_and_as_canonical_json_of_all_its_fields() -> None:
    for block in build_chain().blocks:  # genesis (no transactions) included
        plain = {**Block.content_of(block.height, block.prev_hash, block.timestamp, block.txs), "hash": block.hash}
        assert block.encode() == canonical_encoding(plain)
        assert block.content_encoding() is block.content_encoding()
    block = build_chain().blocks[2]
    altered = dataclasses.replace(block, txs=block.txs[:-1])  # a changed copy is hashed from its own content
    assert altered.hash == block.hash and altered.computed_hash() != block.hash
    assert Block.decode(block.encode()).computed_hash() == block.hash


@pytest.mark.parametrize("mask", [0x01, 0x02, 0x20])
def test_flipping_any_byte_of_any_block_is_detected_and_located(mask: int) -> None:
    encoded = [block.encode() for block in build_chain().blocks]
    assert verify_encoded_chain(encoded).valid
    for index, data in enumerate(encoded):
        for position in range(len(data)):
            tampered = bytearray(data)
            tampered[position] ^= mask
            chain = list(encoded)
            chain[index] = bytes(tampered)
            report = verify_encoded_chain(chain)
            assert not report.valid, (index, position)
            assert report.first_bad_index == index, (index, position, report.problems)


def test_tampered_fields_are_named() -> None:
    blocks = list(build_chain().blocks)
    altered = list(blocks)
    altered[2] = dataclasses.replace(blocks[2], timestamp=99.0)
    assert [(p.index, p.field) for p in verify_chain(altered).problems] == [(2, "content")]
    altered = list(blocks)
    altered[1] = dataclasses.replace(blocks[1], hash=digest("forged"))
    assert [(p.index, p.field) for p in verify_chain(altered).problems] == [(1, "hash")]
    altered = list(blocks)
    altered[2] = Block.create(2, digest("elsewhere"), blocks[2].timestamp, blocks[2].txs)  # re-hashed
    assert [(p.index, p.field) for p in verify_chain(altered).problems][0] == (2, "prev_hash")
    altered = list(blocks)
    altered[3] = dataclasses.replace(blocks[3], txs=blocks[3].txs[:1])
    assert verify_chain(altered).first_bad_index == 3


def test_a_block_altered_in_place_is_caught_too() -> None:
    """verify_chain hashed the encoding cached when the block was made, so a reward raised by 100 through
    object.__setattr__ on a stored transaction (the frozen dataclass bypassed) still verified."""
    chain = build_chain()
    assert chain.verify().valid
    tx = chain.blocks[2].txs[1]
    object.__setattr__(tx, "reward", tx.reward + 100.0)
    report = chain.verify()
    assert [(problem.index, problem.field) for problem in report.problems] == [(2, "content")]
    object.__setattr__(chain.blocks[1], "timestamp", 42.0)
    assert chain.verify().first_bad_index == 1


def test_the_signature_memo_frames_key_signature_and_message() -> None:
    """The memo was keyed on SHA-256(key + signature + message): after one genuine check, the same bytes split
    otherwise (the message's first bytes moved into the signature) were answered True from the memo."""
    from flmarket.market.ledger import verify_signature

    key = derive_private_key(9, "memo")
    message = ProviderClaim("p1", 1, 2, 3.5, digest("update")).encode()
    signature = key.sign(message)
    public = public_key_bytes(key)
    assert verify_signature(public, signature, message)
    assert not verify_signature(public, signature + message[:20], message[20:])
    assert not verify_signature(public + signature[:8], signature[8:], message)


def test_chain_rejects_blocks_that_do_not_link() -> None:
    chain = build_chain()
    stray = Block.create(chain.head.height + 1, digest("other"), 10.0, ())
    with pytest.raises(LedgerError, match="prev_hash: must be the head's hash"):
        chain.append_block(stray)
    with pytest.raises(LedgerError, match="timestamp: must be >= the head's"):
        chain.append(0.5, ())


def test_transaction_errors_name_the_field() -> None:
    with pytest.raises(LedgerError, match="update_digest: must be a SHA-256 digest"):
        Transaction("p", "xyz", digest("g"), 1.0, 1)
    with pytest.raises(LedgerError, match="local_iterations: must be >= 0, got -1"):
        Transaction("p", digest("u"), digest("g"), 1.0, -1)


@given(
    provider_id=st.text(min_size=1, max_size=12),
    round_index=st.integers(0, 2**40),
    local_iterations=st.integers(0, 10**6),
    unit_cost=st.floats(min_value=1e-300, max_value=1e300, allow_nan=False, allow_infinity=False, exclude_min=True),
    update_label=st.text(max_size=8),
)
def test_a_claim_encodes_to_the_canonical_encoding_of_its_fields(
    provider_id: str, round_index: int, local_iterations: int, unit_cost: float, update_label: str
) -> None:
    claim = ProviderClaim(provider_id, round_index, local_iterations, unit_cost, digest(update_label))
    fields = {
        "local_iterations": local_iterations,
        "provider_id": provider_id,
        "round_index": round_index,
        "unit_cost": unit_cost,
        "update_digest": digest(update_label),
    }
    assert claim.encode() == canonical_encoding(fields)


def test_signed_claims_verify_only_under_the_signers_key() -> None:
    claim = ProviderClaim("p1", 3, 2, 8.25, digest("update"))
    key = derive_private_key(7, "p1")
    other = derive_private_key(7, "p2")
    signed = sign_claim(claim, key)
    assert signed.verify(public_key_bytes(key))
    assert not signed.verify(public_key_bytes(other))
    forged = sign_claim(claim, other)
    assert not forged.verify(public_key_bytes(key))
    altered = dataclasses.replace(signed, claim=dataclasses.replace(claim, unit_cost=1.0))
    assert not altered.verify(public_key_bytes(key))


def test_key_derivation_is_reproducible() -> None:
    assert public_key_bytes(derive_private_key(1, "a")) == public_key_bytes(derive_private_key(1, "a"))
    assert public_key_bytes(derive_private_key(1, "a")) != public_key_bytes(derive_private_key(2, "a"))
    first = public_key_bytes(generate_private_key(np.random.default_rng(5)))
    assert first == public_key_bytes(generate_private_key(np.random.default_rng(5)))


def test_a_replica_can_forget_history_and_catch_up_by_height() -> None:
    canonical = Chain(0.0)
    for height in range(1, 6):
        canonical.append(float(height), [])
    replica = Chain.from_head(canonical.blocks[2])  # state transfer at height 2
    assert replica.head.height == 2 and len(replica) == 1
    for block in canonical.blocks_after(replica.head.height):
        replica.append_block(block)
    assert replica.head.hash == canonical.head.hash and len(replica) == 4
    replica.keep_recent(1)
    assert replica.blocks == (canonical.head,)
    replica.append(6.0, [])  # the kept head is enough to link the next block
    assert replica.head.prev_hash == canonical.head.hash
    assert canonical.blocks_after(5) == [] and [b.height for b in canonical.blocks_after(3)] == [4, 5]
    with pytest.raises(LedgerError, match="count: must be >= 1, got 0"):
        replica.keep_recent(0)
