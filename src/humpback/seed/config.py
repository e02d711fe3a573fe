"""The `seed:` section of params.yaml: where the human-written seed pairs come from and how they are picked."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from humpback.config import at_most, param, read_path_problem, seed_param

BUNDLED_SEED = "data/seed/seed.jsonl"


@dataclass
class SeedSource:
    path: str  # a file (.jsonl, .jsonl.gz, .parquet) or a directory of them
    kind: Literal["pairs", "oasst"] = "pairs"  # pairs: one instruction/output per record; oasst: oasst1 messages
    name: str = ""  # label in the `source` column and the metrics; empty = "<kind>:<path>"
    # pairs only: column names of the table
    instruction_column: str = "instruction"
    output_column: str = "output"
    input_column: str = ""  # optional extra context (Alpaca's `input`), appended to the instruction
    id_column: str = ""  # empty = "<file name>:<line or row>"
    # oasst only: flat message table or one conversation tree per line; auto = by file name and content
    layout: Literal["auto", "flat", "trees"] = "auto"
    max_examples: int | None = param(None, ge=0)  # per-source override of SeedConfig.max_examples

    def problems(self) -> list[tuple[str, str]]:
        out = [("path", problem)] if (problem := read_path_problem(self.path)) else []
        return out + [(key, "empty: name the column") for key in ("instruction_column", "output_column")
                      if not getattr(self, key).strip()]

    @property
    def label(self) -> str:
        return self.name or f"{self.kind}:{self.path}"


def _bundled() -> list[SeedSource]:
    return [SeedSource(path=BUNDLED_SEED, kind="pairs", name="bundled", id_column="id")]


@dataclass
class SeedConfig:
    sources: list[SeedSource] = field(default_factory=_bundled)  # default: the bundled seed set only
    lang: str = "en"  # oasst: prompt and reply must both be in this language; empty = any
    max_examples: int = param(3200, ge=0)  # per source, sampled with `seed` after filtering (paper: 3,200 oasst pairs); 0 = all
    seed: int = seed_param(0)  # fixes which pairs the max_examples sample keeps, and which are held out
    # pairs set aside (data/prepared/heldout.parquet) for the held-out likelihood; no model trains on
    # them. Picked by a seeded hash of each pair's text, so adding sources moves few of them; 0 = none
    heldout: int = param(16, ge=0)
    # a pair whose instruction or answer shares this many consecutive words (normalised) with an eval
    # prompt or its reference answer is rejected as contaminated; 0 = no check
    decontamination_ngram: int = param(13, ge=0, le=1000)
    min_chars: int = param(1, ge=1)  # instruction and output each need at least this many characters after stripping
    max_chars: int = param(0, ge=0)  # and at most this many; 0 = no limit
    # the most bytes of one record (a JSONL line, an oasst tree, a Parquet row) read whole; a longer
    # one is an error naming it, after reading at most this much (a gzip bomb costs this, not its size)
    max_record_bytes: int = param(16 << 20, ge=1)

    def problems(self) -> list[tuple[str, str]]:
        out = [] if self.sources else [("sources", "empty: name at least one seed source")]
        return out + at_most("min_chars", "max_chars", self, zero_is_off=True)
