"""Exact and near-duplicate removal across batches; the first copy in corpus order is kept.

Exact: a 64-bit hash of the normalised text (lower case, runs of non-alphanumerics as one space).
Near: MinHash signatures of word shingles, indexed with datasketch's MinHashLSH. The signatures are
computed for a whole batch at once with numpy: word hashes come from polars, a shingle's hash
combines its words' hashes, and the permutations are datasketch's "affine32" scheme (MurmurHash3
finalizer, then h * a + b mod 2^32 with datasketch's own a, b), so a signature equals
`MinHash(num_perm, seed, scheme="affine32")` updated with the same shingle hashes.
"""

from __future__ import annotations

import numpy as np
import polars as pl
from datasketch import LeanMinHash, MinHash, MinHashLSH

from humpback.decontamination import normalise  # noqa: F401  (one normalisation for dedup and decontamination)

_HASH_SEED = 0x5EED
_MASK32 = np.uint64(0xFFFFFFFF)
# odd multipliers that combine the word hashes of one shingle (position-dependent)
_COMBINE = np.array([0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0xD6E8FEB86659FD93,
                     0xFF51AFD7ED558CCD, 0xC4CEB9FE1A85EC53, 0x94D049BB133111EB, 0xBF58476D1CE4E5B9],
                    dtype=np.uint64)


def text_hashes(norm: pl.Series) -> list[int]:
    return norm.hash(seed=_HASH_SEED).to_list()


class ExactDedup:
    """Remembers the first segment id of every normalised text hash."""

    def __init__(self) -> None:
        self.seen: dict[int, str] = {}

    def check(self, hashes: list[int], ids: list[str]) -> list[str | None]:
        """For each row, the id of an earlier copy, or None (and the row is remembered)."""
        out: list[str | None] = []
        for h, sid in zip(hashes, ids, strict=True):
            first = self.seen.get(h)
            if first is None:
                self.seen[h] = sid
            out.append(first)
        return out


def _fmix32(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finalizer (datasketch pre-mixes input hashes with it)."""
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> np.uint32(13))
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> np.uint32(16))


def shingle_hashes(norm: pl.Series, k: int) -> tuple[np.ndarray, np.ndarray]:
    """32-bit hashes of the k-word shingles of each text, and the index of the text of each shingle.

    A text shorter than k words is one shingle of all its words.
    """
    if not 1 <= k <= len(_COMBINE):
        raise ValueError(f"shingle_size must be between 1 and {len(_COMBINE)}")
    words = norm.str.split(" ")
    lengths = words.list.len().to_numpy().astype(np.int64)
    flat = words.explode().hash(seed=_HASH_SEED).to_numpy().astype(np.uint64) & _MASK32
    n = flat.shape[0]
    doc = np.repeat(np.arange(lengths.shape[0]), lengths)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    end = (starts + lengths)[doc]  # end (exclusive) of the text each word belongs to
    pos = np.arange(n, dtype=np.int64)
    padded = np.concatenate([flat, np.zeros(k, dtype=np.uint64)])
    combined = np.zeros(n, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for t in range(k):
            part = padded[t:t + n] * _COMBINE[t]
            combined += np.where(pos + t < end, part, np.uint64(0))
    folded = ((combined >> np.uint64(32)) ^ (combined & _MASK32)).astype(np.uint32)
    n_shingles = np.maximum(lengths - k + 1, 1)
    keep = (pos - starts[doc]) < n_shingles[doc]
    return folded[keep], doc[keep]


class NearDedup:
    """MinHash LSH over word shingles; a segment whose signature collides with a kept one is a near duplicate."""

    def __init__(self, num_perm: int = 64, threshold: float = 0.8, shingle_size: int = 5, seed: int = 1):
        proto = MinHash(num_perm=num_perm, seed=seed, scheme="affine32")
        a, b = proto.permutations
        self.a, self.b = a.astype(np.uint32), b.astype(np.uint32)
        self.num_perm, self.seed, self.k = num_perm, seed, shingle_size
        self.lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)

    def signatures(self, norm: pl.Series, chunk: int = 32_768) -> np.ndarray:
        """(n texts, num_perm) uint32 MinHash signatures.

        Computed permutation-major, in blocks of about `chunk` shingles holding whole texts, so the
        min-reduction runs over contiguous memory that stays in cache.
        """
        hv, doc = shingle_hashes(norm, self.k)
        mixed = _fmix32(hv)
        n = norm.len()
        starts = np.searchsorted(doc, np.arange(n + 1))  # every text has at least one shingle
        sig = np.empty((n, self.num_perm), dtype=np.uint32)
        b = self.b[:, None]
        lo_doc = 0
        while lo_doc < n:
            hi_doc = int(np.searchsorted(starts, starts[lo_doc] + chunk, side="right")) - 1
            hi_doc = min(max(hi_doc, lo_doc + 1), n)
            lo, hi = starts[lo_doc], starts[hi_doc]
            phv = np.multiply.outer(self.a, mixed[lo:hi])  # uint32 arithmetic wraps: mod 2^32
            phv += b
            sig[lo_doc:hi_doc] = np.minimum.reduceat(phv, starts[lo_doc:hi_doc] - lo, axis=1).T
            lo_doc = hi_doc
        return sig

    def check(self, norm: pl.Series, ids: list[str]) -> list[str | None]:
        """For each row, the id of a kept near duplicate, or None (and the row is indexed)."""
        out: list[str | None] = []
        if not ids:
            return out
        sig = self.signatures(norm)
        for row, sid in zip(sig, ids, strict=True):
            m = LeanMinHash(seed=self.seed, hashvalues=row, scheme="affine32")
            hits = self.lsh.query(m)
            if hits:
                out.append(min(hits))
            else:
                self.lsh.insert(sid, m, check_duplication=False)
                out.append(None)
        return out
