"""The compact dedup indexes give exactly the answers of the dict and datasketch MinHashLSH they replace:
the same rows kept, and the same "duplicate of" id, batch after batch."""

from __future__ import annotations

import random

import numpy as np
import polars as pl
import pytest
from datasketch import LeanMinHash, MinHashLSH

from humpback.corpus import dedup, hashindex
from humpback.corpus.dedup import BandIndex, ExactDedup, NearDedup, normalise, text_hashes
from humpback.corpus.hashindex import RowStore, SortedRuns

PINNED_BAND_KEYS = [16789392436019961847, 3213436578812209117, 15759405578075126229, 1714229058879243801]


class ReferenceExact:
    """The dict the exact index replaced."""

    def __init__(self) -> None:
        self.seen: dict[int, str] = {}

    def check(self, hashes: list[int], ids: list[str]) -> list[str | None]:
        out = []
        for h, sid in zip(hashes, ids, strict=True):
            out.append(self.seen.get(h))
            self.seen.setdefault(h, sid)
        return out


class ReferenceNear:
    """datasketch's MinHashLSH, queried and filled one row at a time as the corpus stage did."""

    def __init__(self, threshold: float, num_perm: int, seed: int = 1):
        self.lsh, self.seed = MinHashLSH(threshold=threshold, num_perm=num_perm), seed

    def check(self, sig: np.ndarray, ids: list[str]) -> list[str | None]:
        out = []
        for row, sid in zip(sig, ids, strict=True):
            m = LeanMinHash(seed=self.seed, hashvalues=row, scheme="affine32")
            hits = self.lsh.query(m)
            if hits:
                out.append(min(hits))
            else:
                self.lsh.insert(sid, m, check_duplication=False)
                out.append(None)
        return out


def _batches(n: int, rng: random.Random) -> list[tuple[int, int]]:
    """Uneven batch bounds covering range(n), single rows included."""
    bounds, at = [], 0
    while at < n:
        size = rng.choice([1, 2, 7, 50, 300, 1000])
        bounds.append((at, min(n, at + size)))
        at += size
    return bounds


def _ids(n: int, rng: random.Random) -> list[str]:
    # random, so the least candidate id is rarely the earliest row
    return [f"{rng.getrandbits(64):016x}" for _ in range(n)]


def _planted_signatures(n: int, num_perm: int, b: int, r: int, rng: random.Random) -> np.ndarray:
    """Random signatures where many rows copy whole bands from one or several earlier rows, so a
    query meets several indexed rows, rows of its own batch, and rows that were not indexed; and
    some copy all but one value of a band, which is no match."""
    gen = np.random.default_rng(rng.getrandbits(32))
    sig = gen.integers(0, 2**32, size=(n, num_perm), dtype=np.uint64).astype(np.uint32)
    for i in range(1, n):
        if rng.random() < 0.5:
            for t in rng.sample(range(b), rng.randint(1, min(3, b))):
                j = rng.randrange(max(0, i - 400), i)
                sig[i, t * r:(t + 1) * r] = sig[j, t * r:(t + 1) * r]
        elif rng.random() < 0.5:
            t, j = rng.randrange(b), rng.randrange(max(0, i - 400), i)
            sig[i, t * r + 1:(t + 1) * r] = sig[j, t * r + 1:(t + 1) * r]
    return sig


def _compare_near(sig: np.ndarray, threshold: float, num_perm: int, seed: int) -> list[str | None]:
    rng = random.Random(seed)
    ids = _ids(len(sig), rng)
    ours, ref = BandIndex(threshold, num_perm), ReferenceNear(threshold, num_perm)
    got, want = [], []
    for lo, hi in _batches(len(sig), rng):
        got += ours.check(sig[lo:hi], ids[lo:hi])
        want += ref.check(sig[lo:hi], ids[lo:hi])
    assert got == want
    return got


@pytest.mark.parametrize(("threshold", "num_perm"), [(0.8, 64), (0.5, 32), (0.9, 128)])
def test_band_index_equals_minhash_lsh_on_planted_band_copies(threshold, num_perm):
    bands = MinHashLSH(threshold=threshold, num_perm=num_perm)
    sig = _planted_signatures(4000, num_perm, bands.b, bands.r, random.Random(num_perm))
    got = _compare_near(sig, threshold, num_perm, seed=num_perm)
    assert 1000 < sum(x is not None for x in got) < 3000  # both answers are common


def test_band_keys_are_pinned():
    """The key is only a lookup hash, but a stable one: the same band gives the same key in every run."""
    band = np.array([[0, 0], [1, 2], [2, 1], [2**32 - 1, 7]], dtype=np.uint32)
    keys = dedup.band_keys(band)
    assert keys.dtype == np.uint64 and keys.tolist() == PINNED_BAND_KEYS
    assert dedup.band_keys(band[:, :1]).tolist() != keys.tolist()


def test_band_hash_collisions_are_confirmed_value_by_value(monkeypatch):
    """With a 4-bit band hash nearly every lookup hits a different band: the answers must not change."""
    real = dedup.band_keys
    monkeypatch.setattr(dedup, "band_keys", lambda band: real(band) & np.uint64(0xF))
    bands = MinHashLSH(threshold=0.8, num_perm=64)
    sig = _planted_signatures(1500, 64, bands.b, bands.r, random.Random(5))
    _compare_near(sig, 0.8, 64, seed=5)


def _near_copies(n: int, rng: random.Random) -> list[str]:
    words = [f"w{i}" for i in range(300)]
    texts: list[str] = []
    for _ in range(n):
        if texts and rng.random() < 0.4:  # a lightly edited copy of an earlier text
            t = texts[rng.randrange(len(texts))].split()
            for _ in range(rng.randint(0, 3)):
                t[rng.randrange(len(t))] = rng.choice(words)
            texts.append(" ".join(t))
        else:
            texts.append(" ".join(rng.choice(words) for _ in range(rng.randint(3, 60))))
    return texts


def test_near_dedup_equals_minhash_lsh_on_texts():
    rng = random.Random(11)
    texts = pl.Series(_near_copies(3000, rng))
    norm = pl.select(normalise(pl.lit(texts))).to_series()
    ids = _ids(len(texts), rng)
    near = NearDedup(num_perm=64, threshold=0.8, shingle_size=5)
    ref = ReferenceNear(0.8, 64, seed=near.seed)
    got, want = [], []
    for lo, hi in _batches(len(texts), rng):
        got += near.check(norm[lo:hi], ids[lo:hi])
        want += ref.check(near.signatures(norm[lo:hi]), ids[lo:hi])
    assert got == want and sum(x is not None for x in got) > 300


def test_exact_dedup_equals_the_dict(monkeypatch):
    monkeypatch.setattr(hashindex, "_SMALL_CHUNK", 64)  # ids spread over many chunks
    rng = random.Random(3)
    texts = pl.Series([f"text {rng.randrange(1500)}" for _ in range(5000)])
    hashes = text_hashes(pl.select(normalise(pl.lit(texts))).to_series())
    hashes[:3] = [0, 2**64 - 1, 2**63]  # the ends of the hash range
    ids = _ids(len(hashes), rng)
    ours, ref = ExactDedup(), ReferenceExact()
    got, want = [], []
    for lo, hi in _batches(len(hashes), rng):
        got += ours.check(hashes[lo:hi], ids[lo:hi])
        want += ref.check(hashes[lo:hi], ids[lo:hi])
    assert got == want
    assert len(ours.rows) == len(ours.index) == len(set(hashes))


def test_sorted_runs_find_every_row_of_a_key():
    runs = SortedRuns()
    runs.add(np.array([5, 1, 5], dtype=np.uint64), np.array([0, 1, 2]))
    for i in range(3, 40):  # enough runs to merge several times
        runs.add(np.array([i % 7], dtype=np.uint64), np.array([i]))
    q, rows = runs.find(np.array([5, 9, 1, 5], dtype=np.uint64))
    got = sorted(zip(q.tolist(), rows.tolist(), strict=True))
    fives = sorted([0, 2] + [i for i in range(3, 40) if i % 7 == 5])
    ones = sorted([1] + [i for i in range(3, 40) if i % 7 == 1])
    assert got == sorted([(0, r) for r in fives] + [(2, r) for r in ones] + [(3, r) for r in fives])
    assert len(runs._runs) <= 6 and len(runs) == 40
    assert [(len(x), x.dtype) for x in SortedRuns().find(np.array([1], dtype=np.uint64))] == [(0, np.int64),
                                                                                                (0, np.uint32)]


def test_sorted_runs_merge_like_a_binary_counter():
    runs = SortedRuns()
    for i in range(11):
        runs.add(np.array([i, i + 100], dtype=np.uint64), np.array([i, i]))
        runs.add(np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=np.int64))  # a batch of duplicates adds no run
    assert [len(k) for k, _ in runs._runs] == [16, 4, 2]  # 11 batches of 2 = 8 + 2 + 1 batches
    assert all((k.dtype, v.dtype) == (np.uint64, np.uint32) for k, v in runs._runs)
    q, rows = runs.find(np.array([3, 110], dtype=np.uint64))
    assert (q.dtype, rows.dtype) == (np.int64, np.uint32) and sorted(rows.tolist()) == [3, 10]


def test_row_store_chunks_hold_at_least_1024_rows():
    store = RowStore(width=1)
    for k in range(3):
        store.append([str(k)] * 512, np.full((512, 1), k))
    assert [len(o) - 1 for o in store._offsets] == [1024, 512]  # a chunk under 1024 rows takes in the next batch
    assert all(v.dtype == np.uint32 for v in store._values) and store.values(np.array([1100])).tolist() == [[2]]


def test_row_numbers_fit_uint32(monkeypatch):
    assert np.iinfo(np.uint32).max == hashindex.MAX_ROWS
    monkeypatch.setattr(hashindex, "MAX_ROWS", 3)
    store = RowStore()
    assert store.append(["a", "b", "c"]) == 0
    with pytest.raises(OverflowError):
        store.append(["d"])


def test_row_store_ids_and_values_across_chunks(monkeypatch):
    monkeypatch.setattr(hashindex, "_SMALL_CHUNK", 4)
    store = RowStore(width=2)
    assert store.append([]) == 0
    for n in (1, 1, 3, 1, 5, 2):
        start = len(store)
        assert store.append([f"id{start + k}" for k in range(n)],
                            np.array([[start + k, 7] for k in range(n)])) == start
    assert len(store) == 13 and len(store._blobs) == 3
    assert [store.id(i) for i in range(13)] == [f"id{i}" for i in range(13)]
    got = store.values(np.array([12, 0, 5]))
    assert got.dtype == np.uint32 and got.tolist() == [[12, 7], [0, 7], [5, 7]]
    odd = RowStore()
    odd.append(["", "é", "\ud800", "a\x00b"])  # empty, non-ASCII, a lone surrogate, a NUL
    assert [odd.id(i) for i in range(4)] == ["", "é", "\ud800", "a\x00b"]


def test_mismatched_lengths_are_refused():
    with pytest.raises(ValueError, match=r"^2 hashes for 1 ids$"):
        ExactDedup().check([1, 2], ["a"])
    with pytest.raises(ValueError, match=r"^2 signatures for 1 ids$"):
        BandIndex(0.8, 64).check(np.zeros((2, 64), dtype=np.uint32), ["a"])
