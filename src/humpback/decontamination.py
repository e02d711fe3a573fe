"""Decontamination: training text that shares a long word n-gram with an eval prompt or a reference answer.

Texts are normalised the way the exact dedup does it (lower case, every run of characters that are
not letters or digits one space), so case, punctuation and spacing differences do not hide a copy.
The eval side is small: each of its texts becomes its word n-grams (a text shorter than n words is
one pattern, the whole text), each padded with a space on both sides so that it only matches whole
words. A batch of segments is then checked against all patterns at once by polars' Aho-Corasick
search (`str.contains_any`), and only a matched segment is searched again for which pattern it holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

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


class ContaminationIndex:
    """The word n-grams of a set of eval texts; `check` names the first eval text a segment shares one with."""

    def __init__(self, texts: list[EvalText], n: int):
        if n < 1:
            raise ValueError(f"n-gram size must be at least 1, got {n}")
        self.n = n
        self.patterns: dict[str, EvalText] = {}  # " w1 ... wn " -> the first eval text that has it
        for et, norm in zip(texts, normalise_texts([t.text for t in texts]), strict=True):
            words = norm.split()
            if not words:
                continue
            grams = [words] if len(words) < n else [words[i : i + n] for i in range(len(words) - n + 1)]
            for g in grams:
                self.patterns.setdefault(f" {' '.join(g)} ", et)
        self._list = list(self.patterns)

    def __len__(self) -> int:
        return len(self.patterns)

    def check(self, norm: pl.Series) -> list[tuple[EvalText, str] | None]:
        """For each normalised text, (eval text, shared words) of its first match, or None."""
        if not self._list or norm.len() == 0:
            return [None] * norm.len()
        padded = (" " + norm.fill_null("") + " ").rename("t")
        hit = padded.str.contains_any(self._list).to_list()
        out: list[tuple[EvalText, str] | None] = [None] * norm.len()
        rows = [i for i, h in enumerate(hit) if h]
        if rows:
            found = padded.gather(rows).str.extract_many(self._list, overlapping=True).to_list()
            for row, matches in zip(rows, found, strict=True):
                first = matches[0]
                out[row] = (self.patterns[first], first.strip())
        return out


def describe(match: tuple[EvalText, str], n: int, limit: int = 120) -> str:
    """The rejection detail: the eval id, which field, the overlap size and the shared words."""
    et, words = match
    size = len(words.split())
    shared = words if len(words) <= limit else words[: limit - 1] + "…"
    kind = f"{n}-gram" if size >= n else "whole text"
    return f"{et.eval_id} {et.field} {kind}: {shared}"
