"""Language identification with py3langid, whose naive Bayes model ships inside the package (no download).

`detect` classifies a batch of texts at once: py3langid walks each text's bytes through its feature
automaton in a Python loop (about 0.6 ms per kB), which would dominate the corpus stage; here the walk
runs over all texts of a batch in lock step with numpy, then the same scoring (log1p of the feature
counts times the model's table, the prior, the length-tempered softmax of `norm_probs`). The result
equals py3langid's `classify` on the same text (tests/test_language.py checks it). Only the first
`max_bytes` bytes of a text are read: a language shows in its first few hundred characters.
"""

from __future__ import annotations

import functools
import unicodedata

import numpy as np
from scipy import sparse

MAX_BYTES = 512  # bytes of each text the identifier reads


@functools.lru_cache(maxsize=1)
def identifier():
    """py3langid's identifier with normalised probabilities, loaded once (about a second)."""
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


@functools.lru_cache(maxsize=1)
def known_languages() -> frozenset[str]:
    """The language codes the model tells apart (140 in py3langid 0.4: ISO 639-1 where there is one)."""
    return frozenset(identifier().nb_classes)


def _encode(text: str, max_bytes: int) -> bytes:
    # py3langid's own encoding: an all-capitals text is lower-cased, NFC, UTF-8
    if text.isupper():
        text = text.lower()
    data = unicodedata.normalize("NFC", text).encode("utf8", errors="surrogatepass")[:max_bytes]
    return data


def detect(texts: list[str], max_bytes: int = MAX_BYTES) -> list[tuple[str, float]]:
    """(language code, probability) for every text, as py3langid classifies its first `max_bytes` bytes."""
    if not texts:
        return []
    ident = identifier()
    data = [_encode(t, max_bytes) for t in texts]
    lengths = np.array([len(d) for d in data], dtype=np.int64)
    width = max(int(lengths.max()), 1)
    buf = np.zeros((len(data), width), dtype=np.uint8)
    for i, d in enumerate(data):
        buf[i, : len(d)] = np.frombuffer(d, dtype=np.uint8)
    nextmove, rowbase, output, table = _model_arrays()
    state = np.zeros(len(data), dtype=np.int64)
    found = np.empty((width, len(data)), dtype=np.int64)  # the feature each step emits; -1: none
    for pos in range(width):  # one step of every text's automaton walk; past a text's end it is ignored
        state = nextmove[rowbase[state] + buf[:, pos]]
        found[pos] = np.where(lengths > pos, output[state], -1)
    # count each text's features: sort every text's row, then run lengths of (text, feature) keys
    rows_sorted = np.sort(found.T, axis=1)
    n_feat = table.shape[0]
    keys = (np.arange(len(data), dtype=np.int64)[:, None] * n_feat + rows_sorted).ravel()[rows_sorted.ravel() >= 0]
    starts = np.flatnonzero(np.diff(keys, prepend=-1))
    counts_of = np.diff(np.append(starts, keys.size)).astype(np.float32)
    text_of, feat_of = np.divmod(keys[starts], n_feat)
    indptr = np.searchsorted(text_of, np.arange(len(data) + 1))
    counts = sparse.csr_matrix((np.log1p(counts_of), feat_of, indptr), shape=(len(data), n_feat))
    scores = np.asarray(counts @ table, dtype=np.float32) + np.asarray(ident.nb_pc, dtype=np.float32)
    scores[np.diff(counts.indptr) == 0] = 0.0  # py3langid: a featureless text is uniform (it abstains)
    scores *= (1.0 / np.sqrt(np.maximum(lengths, 1))).astype(np.float32)[:, None]  # its length temperature
    scores = np.exp(scores - scores.max(axis=1, keepdims=True))
    scores /= scores.sum(axis=1, keepdims=True)
    for a, b in ident._alias_pairs:  # aliased labels (srl -> sr): one score per language
        scores[:, a] += scores[:, b]
        scores[:, b] = 0.0
    best = scores.argmax(axis=1)
    labels = ident.nb_classes
    return [(labels[j], float(scores[i, j])) for i, j in enumerate(best)]


@functools.lru_cache(maxsize=1)
def _model_arrays() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    ident = identifier()
    moves = ident.tk_nextmove  # an array.array of ~10M states: viewed, not copied
    nextmove = np.frombuffer(moves, dtype=np.dtype(moves.typecode)) if hasattr(moves, "typecode") else np.asarray(moves)
    return (nextmove, np.asarray(ident._rowbase, dtype=np.int64), np.asarray(ident.tk_output, dtype=np.int64),
            np.asarray(ident.nb_ptc, dtype=np.float32))
