"""Compact, append-only indexes for deduplication: numpy arrays and packed ids, no Python object per row.

`SortedRuns` maps 64-bit keys to row numbers in sorted numpy runs (12 bytes a key); `RowStore` keeps
each indexed row's id (its UTF-8 bytes plus an 8-byte offset) and optionally a fixed-width uint32
vector in chunks. A dict of Python ints and strs costs over 100 bytes an entry.
"""

from __future__ import annotations

import bisect

import numpy as np

MAX_ROWS = 2**32 - 1  # row numbers are uint32
_SMALL_CHUNK = 1024  # a chunk under this many rows takes in the next batch rather than starting another


class SortedRuns:
    """A multimap of uint64 keys to uint32 row numbers, held in sorted runs.

    A new run merges with the previous one while that is no larger (a binary counter), so there are
    about log2(n / batch) runs and every entry is copied about as many times: no per-key objects and
    no rehashing of the whole table.
    """

    def __init__(self) -> None:
        self._runs: list[tuple[np.ndarray, np.ndarray]] = []  # (sorted keys, their rows), largest first

    def __len__(self) -> int:
        return sum(len(k) for k, _ in self._runs)

    def add(self, keys: np.ndarray, rows: np.ndarray) -> None:
        if not len(keys):
            return
        order = np.argsort(keys)
        k, v = keys[order].astype(np.uint64), rows[order].astype(np.uint32)
        while self._runs and len(self._runs[-1][0]) <= len(k):
            pk, pv = self._runs.pop()
            at = np.searchsorted(pk, k)
            k, v = np.insert(pk, at, k), np.insert(pv, at, v)
        self._runs.append((k, v))

    def find(self, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Every (query index, row) pair whose key equals the query, in no particular order."""
        queries = np.asarray(queries, dtype=np.uint64)
        order = np.argsort(queries)  # sorted needles walk each run one way: half the time of random ones
        needles = queries[order]
        found_q, found_rows = [], []
        for keys, rows in self._runs:
            at = np.searchsorted(keys, needles)
            q = np.arange(len(needles))
            while len(q):  # equal keys sit side by side: step on until none of the queries matches
                inside = at < len(keys)
                at, q = at[inside], q[inside]
                same = keys[at] == needles[q]
                at, q = at[same], q[same]
                found_q.append(order[q])
                found_rows.append(rows[at])
                at = at + 1
        if not found_q:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.uint32)
        return np.concatenate(found_q), np.concatenate(found_rows)


class RowStore:
    """The ids of indexed rows, numbered from 0 in the order appended, each with `width` uint32 values.

    Each chunk holds its ids as one UTF-8 byte string with offsets: about the id's length plus 8 bytes.
    """

    def __init__(self, width: int = 0) -> None:
        self.width = width
        self._blobs: list[bytes] = []
        self._offsets: list[np.ndarray] = []  # per chunk: where each id starts in its blob, then the blob's end
        self._values: list[np.ndarray] = []
        self._starts = [0]  # first row of each chunk, then the row count

    def __len__(self) -> int:
        return self._starts[-1]

    def append(self, ids: list[str], values: np.ndarray | None = None) -> int:
        """Append rows; the number of the first one."""
        first = len(self)
        if first + len(ids) > MAX_ROWS:
            raise OverflowError(f"more than {MAX_ROWS} rows in one dedup index")
        if not ids:
            return first
        encoded = [s.encode("utf-8", "surrogatepass") for s in ids]  # any str round-trips
        blob = b"".join(encoded)
        offsets = np.zeros(len(ids) + 1, dtype=np.int64)
        np.cumsum(np.fromiter(map(len, encoded), dtype=np.int64, count=len(ids)), out=offsets[1:])
        vals = np.zeros((len(ids), self.width), np.uint32) if values is None else values.astype(np.uint32)
        # small batches join the last chunk, so a batch size of 1 does not cost a chunk (and its
        # Python objects) per row, while large batches are never copied again
        if self._blobs and len(self._offsets[-1]) - 1 < _SMALL_CHUNK:
            last = self._offsets.pop()
            blob, offsets = self._blobs.pop() + blob, np.concatenate([last, last[-1] + offsets[1:]])
            vals = np.concatenate([self._values.pop(), vals])
            self._starts.pop()
        self._blobs.append(blob)
        self._offsets.append(offsets)
        self._values.append(vals)
        self._starts.append(first + len(ids))
        return first

    def id(self, row: int) -> str:
        c = bisect.bisect_right(self._starts, row) - 1
        i, offsets = row - self._starts[c], self._offsets[c]
        return self._blobs[c][offsets[i]:offsets[i + 1]].decode("utf-8", "surrogatepass")

    def values(self, rows: np.ndarray) -> np.ndarray:
        """(len(rows), width) values of the given rows."""
        rows = np.asarray(rows, dtype=np.int64)
        out = np.empty((len(rows), self.width), dtype=np.uint32)
        chunks = np.searchsorted(self._starts, rows, side="right") - 1
        for c in np.unique(chunks).tolist():
            sel = chunks == c
            out[sel] = self._values[c][rows[sel] - self._starts[c]]
        return out
