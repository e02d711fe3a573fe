"""Decontamination: training text that shares a long word n-gram with an eval prompt or a reference answer.

Texts are normalised the way the exact dedup does it (lower case, every run of characters that are
not letters or digits one space), so case, punctuation and spacing differences do not hide a copy.
The eval side is small: each of its texts becomes its word n-grams (a text shorter than n words is
one pattern, the whole text). A batch of segments is checked against all of them at once: by polars'
Aho-Corasick search for a small eval set, by numpy word-n-gram hashes for a large one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl


@dataclass(frozen=True)
class EvalText:
    eval_id: str
    field: str  # instruction | output
    text: str


def normalise(text: pl.Expr) -> pl.Expr:
    """Lower case, every run of characters that are not letters or digits one space (the exact dedup's too)."""
    return text.str.to_lowercase().str.replace_all(r"[^\p{L}\p{N}]+", " ").str.strip_chars()


def eval_texts(prompts_path: str | Path, eval_cfg=None, *, output_column: str = "output",
               references: list[str] | tuple[str, ...] = ()) -> list[EvalText]:
    """Every eval prompt's instruction, its reference answer where the eval file has one, and the
    answers of the `references` files (named by the prompt they answer, else `<file>:<record>`).
    `eval_cfg`: params `eval:` (its column names); None = the defaults."""
    from humpback.evaluation.inputs import load_outputs, load_prompts, read_records

    instruction_column = eval_cfg.instruction_column if eval_cfg else "instruction"
    prompts = load_prompts(prompts_path, instruction_column=instruction_column,
                           id_column=eval_cfg.id_column if eval_cfg else "id",
                           category_column=eval_cfg.category_column if eval_cfg else "category")
    ids = prompts["prompt_id"].to_list()
    out = [EvalText(i, "instruction", t) for i, t in zip(ids, prompts["instruction"], strict=True)]
    records = read_records(prompts_path, [instruction_column])
    for pid, (_, rec) in zip(ids, records, strict=True):
        if isinstance(rec.get(output_column), str) and rec[output_column].strip():
            out.append(EvalText(pid, "output", rec[output_column]))
    by_instruction = dict(zip(prompts["instruction"], ids, strict=True))
    for path in references:
        answers = load_outputs(path, instruction_column=instruction_column, output_column=output_column)
        for i, (ins, ans) in enumerate(zip(answers["instruction"], answers["output"], strict=True)):
            if ans.strip():
                out.append(EvalText(by_instruction.get(ins, f"{Path(path).name}:{i}"), "output", ans))
    return out


def eval_texts_if_present(prompts_path: str | Path | None, eval_cfg=None, *,
                          references: list[str] | tuple[str, ...] = ()) -> list[EvalText] | None:
    """`eval_texts`, or None when no eval prompts file is named or it does not exist: under DVC it is
    a dep, so it exists; a stage run by hand in a project without one still runs, says so when it is
    done, and its metrics say that nothing was checked."""
    if not prompts_path or not Path(prompts_path).exists():
        return None
    return eval_texts(prompts_path, eval_cfg, references=references)


def normalise_texts(texts: list[str]) -> list[str]:
    return pl.Series("t", texts, dtype=pl.String).to_frame().select(normalise(pl.col("t"))).to_series().to_list()


# position-dependent odd multipliers that combine the word hashes of one n-gram into its hash
_MULT = np.random.default_rng(0x5EED).integers(1, 2**63, size=64, dtype=np.uint64) | np.uint64(1)
_WORD_SEED = 0xC0FFEE
# up to this many eval n-grams a batch is searched by polars' Aho-Corasick (str.contains_any: about
# 0.03 ms a segment for the 104 default prompts); above it by hashes (about 0.1 ms a segment, whatever
# the count: 805 AlpacaEval prompts with their reference answers are 150k n-grams)
AHO_CORASICK_MAX = 20_000


def _words(norm: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Word hashes of normalised texts, flat, with each word's text row and each text's first word."""
    lens = np.array([0 if not t else t.count(" ") + 1 for t in norm], dtype=np.int64)
    present = [t for t in norm if t]
    flat = (pl.Series(present, dtype=pl.String).str.split(" ").explode().hash(seed=_WORD_SEED).to_numpy()
            if present else np.zeros(0, dtype=np.uint64))
    starts = np.concatenate([[0], np.cumsum(lens)[:-1]]) if len(lens) else np.zeros(0, dtype=np.int64)
    return flat, np.repeat(np.arange(len(norm)), lens), starts


def _gram_hashes(flat: np.ndarray, row_of: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(start position, hash) of every run of k words inside one text."""
    m = flat.size - k + 1
    if m <= 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.uint64)
    acc = np.zeros(m, dtype=np.uint64)
    for j in range(k):  # uint64 arithmetic wraps: a hash mod 2^64
        acc += flat[j : j + m] * _MULT[j]
    pos = np.flatnonzero(row_of[:m] == row_of[k - 1 :])
    return pos, acc[pos]


class ContaminationIndex:
    """The word n-grams of a set of eval texts; `check` names the first eval text a segment shares one with.

    An n-gram is a hash of its word hashes (numpy, a whole batch of segments at once), looked up in
    the sorted hashes of the eval side; the words of a hit are compared as text, so a hash collision
    cannot reject a segment. An eval text shorter than n words is indexed whole, under its own length.
    """

    def __init__(self, texts: list[EvalText], n: int):
        if n < 1:
            raise ValueError(f"n-gram size must be at least 1, got {n}")
        self.n = n
        self.patterns: dict[str, EvalText] = {}  # "w1 ... wk" -> the first eval text that has it
        norms = normalise_texts([t.text for t in texts])
        for et, norm in zip(texts, norms, strict=True):
            words = norm.split()
            grams = [words] if len(words) < n else [words[i : i + n] for i in range(len(words) - n + 1)]
            for g in grams:
                if g:
                    self.patterns.setdefault(" ".join(g), et)
        # per size k: sorted gram hashes and, in the same order, the pattern text
        self._by_size: dict[int, tuple[np.ndarray, list[str]]] = {}
        pats = list(self.patterns)
        sizes = np.array([p.count(" ") + 1 for p in pats], dtype=np.int64)
        for k in sorted(set(sizes.tolist())):
            texts_k = [p for p, size in zip(pats, sizes, strict=True) if size == k]
            flat, row_of, starts = _words(texts_k)
            hashes = np.zeros(len(texts_k), dtype=np.uint64)
            for j in range(k):
                hashes += flat[starts + j] * _MULT[j]
            order = np.argsort(hashes, kind="stable")
            self._by_size[k] = (hashes[order], [texts_k[i] for i in order])

    def __len__(self) -> int:
        return len(self.patterns)

    def check(self, norm: pl.Series) -> list[tuple[EvalText, str] | None]:
        """For each normalised text, (eval text, shared words) of its first (leftmost) match, or None."""
        if len(self.patterns) <= AHO_CORASICK_MAX:
            return self._check_aho_corasick(norm)
        return self._check_hashes(norm)

    def _check_aho_corasick(self, norm: pl.Series) -> list[tuple[EvalText, str] | None]:
        # polars builds the automaton on every call: cheap for a few thousand patterns, seconds for 100k
        out: list[tuple[EvalText, str] | None] = [None] * norm.len()
        if not self.patterns or norm.len() == 0:
            return out
        padded = (" " + norm.fill_null("") + " ").rename("t")  # spaces: whole words only
        needles = [f" {p} " for p in self.patterns]
        rows = [i for i, h in enumerate(padded.str.contains_any(needles).to_list()) if h]
        if rows:
            found = padded.gather(rows).str.extract_many(needles, overlapping=True).to_list()
            for row, matches in zip(rows, found, strict=True):
                first = min(matches, key=lambda m, t=padded[row]: t.find(m))  # the leftmost
                out[row] = (self.patterns[first.strip()], first.strip())
        return out

    def _check_hashes(self, norm: pl.Series) -> list[tuple[EvalText, str] | None]:
        texts = norm.fill_null("").to_list()
        out: list[tuple[EvalText, str] | None] = [None] * len(texts)
        if not self.patterns or not texts:
            return out
        flat, row_of, starts = _words(texts)
        best: dict[int, tuple[int, str]] = {}  # row -> (start word, pattern) of its leftmost hit
        for k, (hashes, pats) in self._by_size.items():
            pos, grams = _gram_hashes(flat, row_of, k)
            at = np.searchsorted(hashes, grams).clip(max=len(hashes) - 1)
            for p, i in zip(pos[hashes[at] == grams].tolist(), at[hashes[at] == grams].tolist(), strict=True):
                row = int(row_of[p])
                if row not in best or p < best[row][0]:
                    words = texts[row].split(" ")[p - starts[row] : p - starts[row] + k]
                    if " ".join(words) == pats[i]:  # the words themselves, not only their hash
                        best[row] = (p, pats[i])
        for row, (_, pattern) in best.items():
            out[row] = (self.patterns[pattern], pattern)
        return out


def describe(match: tuple[EvalText, str], n: int, limit: int = 120) -> str:
    """The rejection detail: the eval id, which field, the overlap size and the shared words."""
    et, words = match
    size = len(words.split())
    shared = words if len(words) <= limit else words[: limit - 1] + "…"
    kind = f"{n}-gram" if size >= n else "whole text"
    return f"{et.eval_id} {et.field} {kind}: {shared}"
