"""Exact and near-duplicate removal across batches; the first copy in corpus order is kept.

Exact: a 64-bit hash of the normalised text (lower case, runs of non-alphanumerics as one space).
Near: MinHash signatures of word shingles, indexed in bands as datasketch's MinHashLSH does. The signatures are
computed for a whole batch at once with numpy: word hashes come from polars, a shingle's hash
combines its words' hashes, and the permutations are datasketch's "affine32" scheme (MurmurHash3
finalizer, then h * a + b mod 2^32 with datasketch's own a, b), so a signature equals
`MinHash(num_perm, seed, scheme="affine32")` updated with the same shingle hashes.
Both indexes keep numpy arrays and packed ids (humpback.corpus.hashindex), not Python objects per
segment: about 0.45 KB per kept segment, where a dict and datasketch's MinHashLSH took about 2 KB."""

from __future__ import annotations

import numpy as np
import polars as pl
from datasketch import MinHash, MinHashLSH

from humpback.corpus.hashindex import RowStore, SortedRuns
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
        self.index = SortedRuns()  # text hash -> row in self.rows
        self.rows = RowStore()

    def check(self, hashes: list[int], ids: list[str]) -> list[str | None]:
        """For each row, the id of an earlier copy, or None (and the row is remembered)."""
        h = np.asarray(hashes, dtype=np.uint64)
        if len(h) != len(ids):
            raise ValueError(f"{len(h)} hashes for {len(ids)} ids")
        q, rows = self.index.find(h)
        _, first, inverse = np.unique(h, return_index=True, return_inverse=True)
        first_copy = first[inverse]  # the row of this batch where each hash first occurs
        new = first_copy == np.arange(len(h))
        new[q] = False
        out: list[str | None] = [None] * len(h)
        for i in np.flatnonzero(~new).tolist():
            out[i] = ids[first_copy[i]]
        for i, row in np.column_stack((q, rows)).tolist():  # an indexed copy comes before any in this batch
            out[i] = self.rows.id(row)
        add = np.flatnonzero(new)
        start = self.rows.append([ids[i] for i in add.tolist()])
        self.index.add(h[add], np.arange(start, start + len(add)))
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


_MUL64 = np.uint64(0x9E3779B97F4A7C15)
_START64 = 0x243F6A8885A308D3  # not 0, so a band of zeros does not hash to 0


def band_keys(band: np.ndarray) -> np.ndarray:
    """A 64-bit hash of each row of an (n, r) uint32 band; only a lookup key, equal bands are confirmed value by value."""
    h = np.full(band.shape[0], _START64, dtype=np.uint64)
    for j in range(band.shape[1]):  # unsigned array arithmetic wraps mod 2^64, silently
        h = (h ^ band[:, j].astype(np.uint64)) * _MUL64
        h ^= h >> np.uint64(29)
    return h


class BandIndex:
    """Banded LSH with datasketch MinHashLSH's bands and answers, in numpy arrays.

    MinHashLSH (threshold, num_perm) splits a signature into b bands of r values; a query's candidates
    are the indexed keys equal to it in at least one whole band. NearDedup indexes a row only when it
    has no candidate, so every band value of an indexed row is unique and the index stores, per band,
    a 64-bit hash of the band -> the row, plus the row's b * r values to confirm a hash match exactly.
    """

    def __init__(self, threshold: float, num_perm: int):
        bands = MinHashLSH(threshold=threshold, num_perm=num_perm)  # its (b, r) and its own checks of them
        self.b, self.r = bands.b, bands.r
        self.tables = [SortedRuns() for _ in range(self.b)]
        self.rows = RowStore(self.b * self.r)

    def check(self, sig: np.ndarray, ids: list[str]) -> list[str | None]:
        """For each signature row in order, the least id (as MinHashLSH's `min(query(...))`) among the
        indexed rows and the earlier rows of this batch that share a band with it, or None (and the row is indexed)."""
        if len(sig) != len(ids):
            raise ValueError(f"{len(sig)} signatures for {len(ids)} ids")
        r, n = self.r, len(ids)
        vals = sig[:, :self.b * self.r]
        keys = np.stack([band_keys(vals[:, t * r:(t + 1) * r]) for t in range(self.b)], axis=1)
        indexed: dict[int, set[int]] = {}  # row of this batch -> rows of the index it shares a band with
        shared = np.zeros(n, dtype=bool)  # may share a band with another row of this batch
        for t, table in enumerate(self.tables):
            q, rows = table.find(keys[:, t])
            if len(q):
                band = slice(t * r, (t + 1) * r)
                same = (self.rows.values(rows)[:, band] == vals[q, band]).all(axis=1)
                for i, row in np.column_stack((q[same], rows[same])).tolist():
                    indexed.setdefault(i, set()).add(row)
            _, inverse, counts = np.unique(keys[:, t], return_inverse=True, return_counts=True)
            shared |= counts[inverse] > 1
        # rows that may collide inside the batch are decided in order, as MinHashLSH would see them
        earlier: dict[int, set[int]] = {}
        local: list[dict[bytes, int]] = [{} for _ in range(self.b)]  # band value -> indexed row of this batch
        for i in np.flatnonzero(shared).tolist():
            bands = [vals[i, t * r:(t + 1) * r].tobytes() for t in range(self.b)]
            hits = {local[t][v] for t, v in enumerate(bands) if v in local[t]}
            if hits:
                earlier[i] = hits
            elif i not in indexed:
                for t, v in enumerate(bands):
                    local[t][v] = i
        out: list[str | None] = [None] * n
        for i in indexed.keys() | earlier.keys():
            out[i] = min([self.rows.id(row) for row in indexed.get(i, ())] + [ids[j] for j in earlier.get(i, ())])
        add = np.array([i for i in range(n) if out[i] is None], dtype=np.int64)
        start = self.rows.append([ids[i] for i in add.tolist()], vals[add])
        for t, table in enumerate(self.tables):
            table.add(keys[add, t], np.arange(start, start + len(add)))
        return out


class NearDedup:
    """MinHash LSH over word shingles; a segment whose signature collides with a kept one is a near duplicate."""

    def __init__(self, num_perm: int = 64, threshold: float = 0.8, shingle_size: int = 5, seed: int = 1):
        proto = MinHash(num_perm=num_perm, seed=seed, scheme="affine32")
        a, b = proto.permutations
        self.a, self.b = a.astype(np.uint32), b.astype(np.uint32)
        self.num_perm, self.seed, self.k = num_perm, seed, shingle_size
        self.lsh = BandIndex(threshold, num_perm)

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
        if not ids:
            return []
        return self.lsh.check(self.signatures(norm), ids)
