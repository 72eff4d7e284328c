"""The audit Merkle tree against an independent reading of RFC 9162 §2.1.

Everything below ``# -- RFC 9162, written from the text`` is a second implementation,
kept deliberately naive (recursion straight from the definitions), so that a mistake in
``iotiam.audit.merkle`` cannot hide behind the same mistake in its check.
"""

from __future__ import annotations

import hashlib
import random

import pytest

from iotiam.audit.merkle import (
    EMPTY_ROOT,
    Frontier,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    verify_consistency,
    verify_inclusion,
)

# -- RFC 9162, written from the text ---------------------------------------------------


def rfc_k(n: int) -> int:
    """§2.1.1: the largest power of two smaller than n."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def rfc_mth(data: list[bytes]) -> bytes:
    """§2.1.1: MTH over the *entries* (not yet hashed)."""
    n = len(data)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashlib.sha256(b"\x00" + data[0]).digest()
    k = rfc_k(n)
    return hashlib.sha256(b"\x01" + rfc_mth(data[:k]) + rfc_mth(data[k:])).digest()


def rfc_path(m: int, data: list[bytes]) -> list[bytes]:
    """§2.1.3.1 PATH(m, D[n])."""
    n = len(data)
    if n == 1:
        return []
    k = rfc_k(n)
    if m < k:
        return [*rfc_path(m, data[:k]), rfc_mth(data[k:])]
    return [*rfc_path(m - k, data[k:]), rfc_mth(data[:k])]


def rfc_subproof(m: int, data: list[bytes], b: bool) -> list[bytes]:
    """§2.1.4.1 SUBPROOF(m, D[n], b)."""
    n = len(data)
    if m == n:
        return [] if b else [rfc_mth(data)]
    k = rfc_k(n)
    if m <= k:
        return [*rfc_subproof(m, data[:k], b), rfc_mth(data[k:])]
    return [*rfc_subproof(m - k, data[k:], False), rfc_mth(data[:k])]


def rfc_verify_inclusion(index: int, size: int, leaf: bytes, path: list[bytes],
                         root: bytes) -> bool:
    """§2.1.3.2, step by step."""
    if index >= size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            return False
        if fn % 2 == 1 or fn == sn:
            r = hashlib.sha256(b"\x01" + p + r).digest()
            if fn % 2 == 0:
                while not (fn % 2 == 1 or fn == 0):
                    fn //= 2
                    sn //= 2
        else:
            r = hashlib.sha256(b"\x01" + r + p).digest()
        fn //= 2
        sn //= 2
    return sn == 0 and r == root


def rfc_verify_consistency(first: int, second: int, first_hash: bytes, second_hash: bytes,
                           path: list[bytes]) -> bool:
    """§2.1.4.2, step by step."""
    if first == second:
        return not path and first_hash == second_hash
    if not path:
        return False
    if first & (first - 1) == 0:
        path = [first_hash, *path]
    fn, sn = first - 1, second - 1
    while fn % 2 == 1:
        fn //= 2
        sn //= 2
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn % 2 == 1 or fn == sn:
            fr = hashlib.sha256(b"\x01" + c + fr).digest()
            sr = hashlib.sha256(b"\x01" + c + sr).digest()
            if fn % 2 == 0:
                while not (fn % 2 == 1 or fn == 0):
                    fn //= 2
                    sn //= 2
        else:
            sr = hashlib.sha256(b"\x01" + sr + c).digest()
        fn //= 2
        sn //= 2
    return fr == first_hash and sr == second_hash and sn == 0


# -- the tests -------------------------------------------------------------------------

ENTRIES = [hashlib.sha256(str(i).encode()).digest() for i in range(70)]
LEAVES = [leaf_hash(e) for e in ENTRIES]


def test_frontier_ok_root_is_mth_at_every_size() -> None:
    frontier = Frontier()
    assert frontier.root() == EMPTY_ROOT == rfc_mth([])
    for n in range(1, len(ENTRIES) + 1):
        frontier.append(LEAVES[n - 1])
        assert frontier.root() == rfc_mth(ENTRIES[:n]), n
        # the compact range is one peak per 1 bit of the size (O(log n) state)
        assert len(frontier.peaks) == n.bit_count()
        assert Frontier.decode(n, frontier.encode()) == frontier


def test_frontier_fail_decode_wrong_peak_count() -> None:
    with pytest.raises(ValueError, match="peaks"):
        Frontier.decode(3, LEAVES[0].hex())


def test_inclusion_ok_matches_rfc_and_verifies_both_ways() -> None:
    for n in range(1, 34):
        root = rfc_mth(ENTRIES[:n])
        for m in range(n):
            proof = inclusion_proof(LEAVES[:n], m)
            assert proof == rfc_path(m, ENTRIES[:n]), (m, n)
            assert rfc_verify_inclusion(m, n, LEAVES[m], proof, root)
            assert verify_inclusion(LEAVES[m], m, n, proof, root)


def test_consistency_ok_matches_rfc_and_verifies_both_ways() -> None:
    for n in range(1, 34):
        new_root = rfc_mth(ENTRIES[:n])
        for m in range(1, n + 1):
            proof = consistency_proof(LEAVES[:n], m)
            assert proof == (rfc_subproof(m, ENTRIES[:n], True) if m < n else []), (m, n)
            old_root = rfc_mth(ENTRIES[:m])
            assert rfc_verify_consistency(m, n, old_root, new_root, proof)
            assert verify_consistency(m, n, old_root, new_root, proof)


def _flip(proof: list[bytes], at: int) -> list[bytes]:
    damaged = list(proof)
    damaged[at] = bytes([damaged[at][0] ^ 1]) + damaged[at][1:]
    return damaged


def test_inclusion_fail_tampered() -> None:
    rng = random.Random(7)
    for _ in range(200):
        n = rng.randint(2, 70)
        m = rng.randrange(n)
        root = rfc_mth(ENTRIES[:n])
        proof = inclusion_proof(LEAVES[:n], m)
        other = (m + 1) % n
        for bad in (
            (LEAVES[m], m, n, _flip(proof, rng.randrange(len(proof))), root),  # a hash
            (LEAVES[other], m, n, proof, root),  # another record
            (LEAVES[m], other, n, proof, root),  # another position
            (LEAVES[m], m, n, proof[:-1], root),  # shortened
            (LEAVES[m], m, n, [*proof, proof[0]], root),  # lengthened
            (LEAVES[m], m, n, proof, rfc_mth(ENTRIES[:n - 1])),  # another tree
        ):
            assert not verify_inclusion(*bad)
            assert not rfc_verify_inclusion(bad[1], bad[2], bad[0], bad[3], bad[4])


def test_consistency_fail_tampered() -> None:
    rng = random.Random(11)
    for _ in range(200):
        n = rng.randint(3, 70)
        m = rng.randint(1, n - 1)
        old, new = rfc_mth(ENTRIES[:m]), rfc_mth(ENTRIES[:n])
        proof = consistency_proof(LEAVES[:n], m)
        forked = rfc_mth([*ENTRIES[:m - 1], b"forged", *ENTRIES[m:n]])
        for bad in (
            (m, n, old, new, _flip(proof, rng.randrange(len(proof)))),
            (m, n, old, forked, proof),  # history rewritten below the old size
            (m, n, rfc_mth(ENTRIES[:m + 1]), new, proof),  # wrong old root
            (m, n, old, new, proof[:-1]),
        ):
            assert not verify_consistency(*bad)
            assert not rfc_verify_consistency(*bad)


def test_consistency_fail_shrinking_or_empty() -> None:
    root = rfc_mth(ENTRIES[:4])
    assert not verify_consistency(5, 4, root, root, [])
    assert not verify_consistency(0, 4, EMPTY_ROOT, root, [])
    with pytest.raises(ValueError, match="no consistency proof"):
        consistency_proof(LEAVES[:4], 5)
