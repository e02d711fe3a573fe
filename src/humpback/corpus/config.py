"""The `corpus:` section of params.yaml: where the unlabelled text comes from and how segments are cleaned."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from humpback.config import at_most, excerpt, param, read_path_problem, seed_param

SourceKind = Literal["packages", "html", "warc", "table"]
DEFAULT_INVENTORY = "requirements/runtime.txt"  # the locked runtime set: the same default corpus on every machine
MAX_SHINGLE = 8  # words per shingle the near-duplicate hashing combines (corpus.dedup)

# Headers whose segment is navigation, promotion or boilerplate rather than self-contained prose.
# Matched case-insensitively as whole words anywhere in the header.
DEFAULT_BAD_HEADERS = [
    "quick links", "advertisement", "sponsored", "newsletter", "subscribe", "sign up", "log in", "login",
    "table of contents", "contents", "menu", "navigation", "site map", "sitemap", "related posts",
    "related articles", "share this", "follow us", "contact us", "cookie", "cookies", "privacy policy",
    "terms of use", "terms of service", "copyright", "all rights reserved", "comments", "leave a reply", "license",
    "licence", "licensing", "installation", "installing", "changelog", "change log", "release notes",
    "release history", "version history", "what's new", "bug fixes", "bugfixes", "breaking changes", "deprecations",
    "removals", "contributor-facing changes", "packaging updates", "improved documentation", "authors",
    "contributors", "credits", "acknowledgements", "acknowledgments", "sponsors", "donate", "funding", "badges",
    "useful links", "citation", "tidelift",
]


@dataclass
class SourceConfig:
    kind: SourceKind = "packages"  # packages: READMEs of a pinned set of Python distributions | html | warc | table
    # packages: an inventory file of name==version lines (requirements/runtime.txt), each installed at that version;
    # html: directory of .html files; warc: a .warc(.gz) file or directory; table: .jsonl(.gz)/.parquet file or directory
    path: str = ""
    name: str = ""  # label in the `source` column and the metrics; empty = kind
    # table only: column names (FineWeb/C4 use text, id, url)
    text_column: str = "text"
    id_column: str = "id"  # missing column = "<file name>:<line or row>"
    url_column: str = "url"
    allow_headerless: bool | None = None  # keep a document without headers as one segment; None = true for table only
    max_docs: int = param(0, ge=0)  # read at most this many documents from the source; 0 = all

    def problems(self) -> list[tuple[str, str]]:
        """Every source names a path without control characters; a packages source an inventory file
        (checked when params are read, relative to the project)."""
        if self.path and (problem := read_path_problem(self.path)):
            return [("path", problem)]
        if self.kind != "packages":
            return [] if self.path else [("path", f"a {self.kind} source needs a `path` (a file or directory to read)")]
        if not self.path:
            return [("path", "a packages source needs an inventory of pinned distributions (name==version lines), "
                             f"e.g. {DEFAULT_INVENTORY}")]
        if not Path(self.path).is_file():
            return [("path", f"{excerpt(self.path)} is not a file (a packages source reads an inventory of name==version lines)")]
        return []

    @property
    def label(self) -> str:
        return self.name or self.kind

    @property
    def headerless_ok(self) -> bool:
        return self.kind == "table" if self.allow_headerless is None else self.allow_headerless


@dataclass
class DecontaminationConfig:
    # words a segment must share with an eval text to be dropped (the field uses 8 to 13); an eval text
    # shorter than this counts when it appears whole; 0 = off
    ngram: int = param(13, ge=0, le=64)
    # files of reference answers besides the eval prompts file (JSONL/Parquet/AlpacaEval JSON with
    # instruction and output columns); the eval file's own `output` column, where it has one, is always used
    references: list[str] = field(default_factory=list)

    def problems(self) -> list[tuple[str, str]]:
        return [(f"references[{i}]", p) for i, path in enumerate(self.references) if (p := read_path_problem(path))]


def language_problems(key: str, codes: list[str]) -> list[tuple[str, str]]:
    """Codes the language identifier does not know, as problems() entries on `key`."""
    if not codes:
        return []
    from humpback.language import known_languages

    known = known_languages()
    return [(f"{key}[{i}]", f"{excerpt(c)} is not a language code the identifier knows (ISO 639-1, e.g. en, de, fr)")
            for i, c in enumerate(codes) if c not in known]


def _default_sources() -> list[SourceConfig]:
    return [SourceConfig(kind="packages", path=DEFAULT_INVENTORY)]


@dataclass
class CorpusConfig:
    sources: list[SourceConfig] = field(default_factory=_default_sources)  # default: READMEs of the locked runtime set
    # length bounds in characters of the cleaned segment text (the paper states no bounds)
    min_chars: int = param(400, ge=1)
    max_chars: int = param(3000, ge=1)
    # header heuristics
    reject_empty_header: bool = True  # text before a document's first header (or under an empty one)
    max_header_caps: float = param(0.7, ge=0, le=1)  # reject when more than this share of the header's letters are capitals ...
    header_caps_min_letters: int = param(5, ge=0)  # ... and the header has at least this many letters ("FAQ", "API" pass)
    reject_version_headers: bool = True  # headers that start with a version number ("2.1.0 (2024-05-01)"): changelogs
    bad_headers: list[str] = field(default_factory=lambda: list(DEFAULT_BAD_HEADERS))
    # boilerplate heuristics
    max_dup_line_share: float = param(0.3, ge=0, le=1)  # share of lines (with letters) that repeat an earlier line
    max_link_line_share: float = param(0.3, ge=0, le=1)  # share of lines that are only links, URLs or badges
    min_alpha_share: float = param(0.5, ge=0, le=1)  # letters / characters of the text
    # deduplication
    exact_dedup: bool = True  # hash of lower-cased text with punctuation and spacing removed
    near_dedup: bool = True  # MinHash LSH over word shingles
    minhash_num_perm: int = param(64, ge=2, le=1024)  # datasketch's LSH needs at least 2
    minhash_threshold: float = param(0.8, gt=0, le=1)  # estimated Jaccard similarity that makes a near duplicate
    shingle_size: int = param(5, ge=1, le=MAX_SHINGLE)  # words per shingle
    seed: int = seed_param(1)  # MinHash permutations
    batch_size: int = param(5000, ge=1)  # segments per processing batch (bounds memory)
    # one record read whole, at most: an HTML file, a WARC record or its decoded HTTP payload, a table line or
    # row; a larger one is rejected (too_large; a JSONL line: line_too_long) after reading at most this many
    # bytes, so a decompression bomb costs this much memory, not its expansion
    max_record_bytes: int = param(16 << 20, ge=1)
    # segments sharing a long word n-gram with an eval prompt or reference answer (reason `contaminated`)
    decontamination: DecontaminationConfig = field(default_factory=DecontaminationConfig)
    # segments detected in another language are rejected (reason `language`); ISO 639-1 codes, [] = any
    languages: list[str] = field(default_factory=lambda: ["en"])
    # ... when the identifier gives that other language at least this probability (short or mixed
    # segments get low probabilities and are kept)
    min_language_prob: float = param(0.5, ge=0, le=1)

    def problems(self) -> list[tuple[str, str]]:
        out = [] if self.sources else [("sources", "empty: name at least one corpus source")]
        out += language_problems("languages", self.languages)
        out += at_most("min_chars", "max_chars", self)
        if self.near_dedup and not out:
            out += _lsh_problem(self.minhash_threshold, self.minhash_num_perm)
        return out


@functools.lru_cache(maxsize=16)
def _lsh_problem(threshold: float, num_perm: int) -> list[tuple[str, str]]:
    """datasketch's LSH splits num_perm into bands for the threshold; a threshold too close to 1 for
    the permutations leaves fewer than 2 bands, which it refuses (the corpus stage would crash)."""
    try:
        from datasketch.lsh import _optimal_param
    except ImportError:  # another datasketch: the corpus stage says it
        return []
    bands, _ = _optimal_param(threshold, num_perm, 0.5, 0.5)
    if bands >= 2:
        return []
    return [("minhash_threshold", f"{threshold:g} is too close to 1 for minhash_num_perm {num_perm}: "
                                  "datasketch's LSH needs at least 2 bands (lower the threshold or add permutations)")]
