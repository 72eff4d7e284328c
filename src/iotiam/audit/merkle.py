"""The Merkle tree over the audit records, as RFC 9162 (Certificate Transparency 2.0) §2.1
defines it, so that signed checkpoints and proofs can be checked by any CT/tlog tool.

A leaf is the 32-byte hash of one audit record (``AuditRecord.hash``, which covers all its
fields and its predecessor). Leaf ``i`` (0-based) is the record with ``seq = i + 1``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

HASH_BYTES = 32
#: MTH({}) = SHA-256() (RFC 9162 §2.1.1)
EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(leaf: bytes) -> bytes:
    """MTH({d}) = SHA-256(0x00 || d) (RFC 9162 §2.1.1)."""
    return hashlib.sha256(b"\x00" + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right) (RFC 9162 §2.1.1)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def record_leaf(record_hash_hex: str) -> bytes:
    """The leaf hash of an audit record, from its hex chain hash."""
    return leaf_hash(bytes.fromhex(record_hash_hex))


@dataclass
class Frontier:
    """The compact range [0, size): one root per perfect subtree, largest first.

    Appending a leaf merges equal-sized subtrees like a binary counter carries: O(1)
    hashes amortised, O(log n) at worst, and the state is at most log2(n) hashes.
    """

    size: int = 0
    peaks: list[bytes] = field(default_factory=list)

    def append(self, leaf_hashed: bytes) -> None:
        """Add the hash of the next leaf."""
        self.peaks.append(leaf_hashed)
        carry = self.size
        # each trailing 1 bit of the old size is a perfect subtree that now has a twin
        while carry & 1:
            right = self.peaks.pop()
            self.peaks[-1] = node_hash(self.peaks[-1], right)
            carry >>= 1
        self.size += 1

    def root(self) -> bytes:
        """MTH of the leaves so far: the peaks folded from the smallest up (§2.1.1)."""
        if not self.peaks:
            return EMPTY_ROOT
        acc = self.peaks[-1]
        for peak in reversed(self.peaks[:-1]):
            acc = node_hash(peak, acc)
        return acc

    def encode(self) -> str:
        """Text for storage: the peaks' hex, in order."""
        return b"".join(self.peaks).hex()

    @classmethod
    def decode(cls, size: int, text: str) -> Frontier:
        """The inverse of :meth:`encode`; ValueError if it cannot be the range of ``size``."""
        raw = bytes.fromhex(text)
        peaks = [raw[i:i + HASH_BYTES] for i in range(0, len(raw), HASH_BYTES)]
        if len(peaks) != size.bit_count() or len(raw) % HASH_BYTES:
            raise ValueError(f"a frontier of {size} leaves has {size.bit_count()} peaks")
        return cls(size=size, peaks=peaks)

    @classmethod
    def of(cls, leaves: Iterable[bytes]) -> Frontier:
        """The compact range of these leaf hashes."""
        frontier = cls()
        for leaf in leaves:
            frontier.append(leaf)
        return frontier

    def copy(self) -> Frontier:
        """An independent copy."""
        return Frontier(size=self.size, peaks=list(self.peaks))


def _split(n: int) -> int:
    """The largest power of two smaller than n (RFC 9162 §2.1.1), n > 1."""
    return 1 << ((n - 1).bit_length() - 1)


def subtree_root(leaves: Sequence[bytes]) -> bytes:
    """MTH of a list of leaf hashes."""
    return Frontier.of(leaves).root()


def inclusion_proof(leaves: Sequence[bytes], index: int) -> list[bytes]:
    """PATH(m, D[n]) (RFC 9162 §2.1.3.1) for leaf ``index`` of the tree of ``leaves``."""
    if not 0 <= index < len(leaves):
        raise ValueError(f"leaf {index} is not in a tree of {len(leaves)}")
    path: list[bytes] = []
    lo, hi = 0, len(leaves)
    # walk down from the root; siblings are collected top-down, the proof is bottom-up
    while hi - lo > 1:
        k = _split(hi - lo)
        if index < lo + k:
            path.append(subtree_root(leaves[lo + k:hi]))
            hi = lo + k
        else:
            path.append(subtree_root(leaves[lo:lo + k]))
            lo += k
    path.reverse()
    return path


def consistency_proof(leaves: Sequence[bytes], old_size: int) -> list[bytes]:
    """PROOF(m, D[n]) (RFC 9162 §2.1.4.1): the tree of ``old_size`` is a prefix of ``leaves``."""
    n = len(leaves)
    if not 0 < old_size <= n:
        raise ValueError(f"no consistency proof from {old_size} to {n}")
    return _subproof(leaves, old_size, complete=True) if old_size < n else []


def _subproof(leaves: Sequence[bytes], m: int, *, complete: bool) -> list[bytes]:
    # SUBPROOF(m, D[n], b), RFC 9162 §2.1.4.1
    n = len(leaves)
    if m == n:
        return [] if complete else [subtree_root(leaves)]
    k = _split(n)
    if m <= k:
        return [*_subproof(leaves[:k], m, complete=complete), subtree_root(leaves[k:])]
    return [*_subproof(leaves[k:], m - k, complete=False), subtree_root(leaves[:k])]


def verify_inclusion(leaf_hashed: bytes, index: int, size: int, proof: Sequence[bytes],
                     root: bytes) -> bool:
    """RFC 9162 §2.1.3.2: does ``proof`` put ``leaf_hashed`` at ``index`` under ``root``?"""
    if not 0 <= index < size:
        return False
    fn, sn, r = index, size - 1, leaf_hashed
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(old_size: int, new_size: int, old_root: bytes, new_root: bytes,
                       proof: Sequence[bytes]) -> bool:
    """RFC 9162 §2.1.4.2: is the tree (old_size, old_root) a prefix of (new_size, new_root)?"""
    if not 0 < old_size <= new_size:
        return False
    if old_size == new_size:
        return not proof and old_root == new_root
    path = list(proof)
    # step 2: if first is an exact power of 2, prepend first_hash
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    if not path:
        return False
    fn, sn = old_size - 1, new_size - 1
    # step 4: shift both right while LSB(fn) is set
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return fr == old_root and sr == new_root and sn == 0
