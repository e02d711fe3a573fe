"""Self-augmentation: the backward model M_yx writes one candidate instruction per web segment.

Small backward models often write something that is not a user's request: an echo of the text,
a meta-instruction ("Write an instruction for this text"), the template's "Response:" label, an
assistant's greeting instead of a user's request, a repetition loop. Every generated instruction is cleaned (quotes, "Instruction:" labels, chat
artefacts) and then checked; a degenerate one is kept in the rejected table with its reason. So is
an instruction that copies an eval prompt (`eval_prompt`, with the prompt's id) or is written in
another language than its segment (`language`, with both detected languages).
"""

from __future__ import annotations

import re
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from humpback.chunks import ENGINE_UNRECORDED, engine_settings, model_identity, process_in_chunks, record
from humpback.config import at_most, param, seed_param
from humpback.decontamination import ContaminationIndex, EvalText, describe, normalise_texts
from humpback.engines.base import Engine
from humpback.engines.config import EngineConfig
from humpback.errors import ConfigError, EmptyResultError, InputError
from humpback.io import write_json, write_parquet
from humpback.language import detect
from humpback.prompts import PromptsConfig, backward_messages
from humpback.readers import read_table
from humpback.sampling import SamplingParams
from humpback.text import has_visible

# Phrases that describe the task instead of being a request. Case-insensitive regexes.
META_PATTERNS = [
    r"\b(?:write|generate|create|give|provide|produce|come up with|suggest|formulate)\b[^.?!\n]{0,30}"
    r"\b(?:instruction|request)s?\b",
    r"\b(?:write|generate|create|produce|come up with|formulate)\s+(?:a|an|one|the)\s+"
    r"(?:possible\s+|suitable\s+|user\s+)?(?:question|prompt|query)\b",
    r"\bwhat(?:'s|’s|\s+is|\s+was|\s+would be|\s+could be|\s+might be) (?:the|a|an|this|that) (?:user'?s? )?"
    r"(?:instruction|request|prompt|question|query)\b",
    r"\bhere(?:\s+is|\s+are|'s|’s) (?:the|a|an|my|your|one|some) (?:possible |user'?s? |suitable )?"
    r"(?:instruction|request|prompt|question|query)s?\b",
    r"(?:^|\n)\s*(?:\*\*)?(?:response|answer|output|assistant|text)(?:\*\*)?\s*:",
    r"\b(?:the|this|that) (?:above|following|given|provided) (?:text|response|answer|passage|paragraph|article)\b",
    r"\b(?:the|this) (?:response|answer) (?:above|below)\b",
    r"\buser(?:'s|’s|s')? (?:request|instruction|prompt)\b",
    r"\bthe user (?:requested|asked|asks|wants|wanted|is asking|would like|needs)\b",
]

# The reply of an assistant rather than a user's request: small untuned models greet, offer help
# or ask for the text ("I'm ready to help with your request. What can I assist you with?").
ASSISTANT_VOICE_PATTERNS = [
    r"\b(?:I'?m|I am|I'?d be|I would be|I'?ll be) (?:happy|glad|ready|here|delighted) to (?:help|assist)\b",
    r"\b(?:how|what) can I (?:help|assist|do for you)\b",
    r"\byour (?:request|instruction|query)\b",
    r"\bplease (?:provide|share|send|paste|go ahead and share)\b.{0,40}"
    r"\b(?:request|instruction|question|text|prompt|response)\b",
    r"^(?:sure|certainly|of course|okay|ok)\b[,!.]",
    r"\bas an ai\b",
    r"\b(?:I'?m|I am|you'?re|you are) an? (?:AI|artificial intelligence|virtual|chat ?bot|language model)\b",
    r"\bhere(?:'s|’s| is) how\b",
    r"^(?:to|in order to) [^.?!\n]{1,80}, you (?:can|should|need|must|will)\b",
]


@dataclass
class FilterConfig:
    min_chars: int = param(10, ge=0)  # shorter is "too_short" ("Poem.")
    min_words: int = param(2, ge=0)
    max_chars: int = param(600, ge=1)  # longer is "too_long": a request, not an essay
    max_words: int = param(120, ge=1)
    min_alpha_ratio: float = param(0.5, ge=0, le=1)  # letters / non-space characters below this: "mostly_non_alpha"
    # "repetition": share of repeated word 3-grams at or above this (with >= 8 words), or one
    # character repeated 10+ times in a row.
    max_repeated_ngram_share: float = param(0.3, ge=0)  # above 1: off
    # "echo": the instruction's word 3-grams found in the segment at or above this share, or the
    # whole instruction (>= 4 words) appears verbatim in the segment.
    max_echo_overlap: float = param(0.6, ge=0)  # above 1: off
    meta_patterns: list[str] = field(default_factory=lambda: list(META_PATTERNS))  # "meta_instruction"
    assistant_voice_patterns: list[str] = field(default_factory=lambda: list(ASSISTANT_VOICE_PATTERNS))
    # "eval_prompt": the instruction equals an eval prompt (normalised: case, punctuation, spacing), holds a
    # shorter one whole, or shares this many consecutive words with one; 0 = the equality only
    eval_ngram: int = param(8, ge=0, le=64)
    # "language": the instruction is detected in another language than its segment, with at least
    # this probability (an instruction is short: a low probability is no evidence); above 1: off
    min_language_prob: float = param(0.9, ge=0)

    def problems(self) -> list[tuple[str, str]]:
        """A pattern that is not a regular expression, or a minimum above its maximum, is a params
        error, found before any model loads."""
        out = at_most("min_chars", "max_chars", self) + at_most("min_words", "max_words", self)
        for key in ("meta_patterns", "assistant_voice_patterns"):
            for i, pattern in enumerate(getattr(self, key)):
                try:
                    re.compile(pattern, re.IGNORECASE)
                except re.error as e:
                    out.append((f"{key}[{i}]", f"not a valid regular expression ({e})"))
        return out


@dataclass
class AugmentConfig:
    max_segments: int = param(200, ge=0)  # sample this many segments (fixed seed); 0 = all (paper: 502k)
    seed: int = seed_param(0)  # sampling of segments; generation chunk i uses seed + i
    chunk_size: int = param(32, ge=1)  # segments per resumable part
    sampling: SamplingParams = field(default_factory=lambda: SamplingParams(max_new_tokens=48))  # an instruction is short
    filter: FilterConfig = field(default_factory=FilterConfig)


# ---------------------------------------------------------------------------------------------
# cleaning

# Special tokens and role markers a chat model may leave in its reply.
_SPECIAL = re.compile(r"<\|[^|>]{1,40}\|>|</?s>|\[/?INST\]|<<SYS>>|<</SYS>>")
# A new turn starting after the instruction: everything from there on is not the instruction.
_TRAILING_TURN = re.compile(
    r"\n\s*(?:#+\s*)?(?:\*\*)?(?:response|answer|assistant|output|user|human|system)(?:\*\*)?\s*:", re.IGNORECASE
)
_LABEL = re.compile(
    r"^\s*(?:#+\s*)?(?:\*\*)?(?:the\s+)?(?:user'?s?\s+)?(?:instruction|request|prompt|question|query)"
    r"(?:\*\*)?\s*[:\-–]\s*(?:\*\*)?\s*",
    re.IGNORECASE,
)
_QUOTES = {'"': '"', "'": "'", "“": "”", "‘": "’", "`": "`", "«": "»", "*": "*"}


def clean_instruction(text: str | None) -> str:
    """Strip special tokens, a following turn, "Instruction:" labels and surrounding quotes."""
    if not text:
        return ""
    text = _SPECIAL.sub("", text)
    m = _TRAILING_TURN.search(text)
    if m and m.start() > 0 and text[: m.start()].strip():
        text = text[: m.start()]
    text = text.strip()
    for _ in range(3):  # labels and quotes can nest: 'Instruction: "..."'
        before = text
        text = _LABEL.sub("", text, count=1).strip()
        while len(text) >= 2 and text[0] in _QUOTES and text[-1] == _QUOTES[text[0]]:
            text = text[1:-1].strip()
        if text == before:
            break
    return text


# ---------------------------------------------------------------------------------------------
# degenerate filter

_WORD = re.compile(r"\w+", re.UNICODE)
REASONS = ["empty", "too_long", "too_short", "mostly_non_alpha", "repetition", "meta_instruction", "assistant_voice", "echo",
           "eval_prompt", "language"]


def _ngrams(words: list[str], n: int = 3) -> list[tuple[str, ...]]:
    return [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]


def echo_overlap(instruction: str, output: str) -> float:
    """Share of the instruction's word 3-grams (words for shorter ones) that occur in the output."""
    words = _WORD.findall(instruction.lower())
    out_words = _WORD.findall(output.lower())
    if not words:
        return 0.0
    if len(words) < 3:  # too short for 3-grams: only an exact copy counts
        return float(words == out_words)
    grams = _ngrams(words)
    have = set(_ngrams(out_words))
    return sum(g in have for g in grams) / len(grams)


def _compile(patterns: list[str]) -> list[re.Pattern]:
    return [re.compile(p, re.IGNORECASE) for p in patterns]


class DegenerateFilter:
    """`reason(instruction, output)` -> the first failed check's name, or None for a keeper."""

    def __init__(self, cfg: FilterConfig):
        for key, problem in cfg.problems():
            raise ConfigError(f"augment.filter.{key}: {problem}")
        self.cfg = cfg
        self.meta = _compile(cfg.meta_patterns)
        self.voice = _compile(cfg.assistant_voice_patterns)

    def reason(self, instruction: str, output: str) -> str | None:
        cfg = self.cfg
        if not has_visible(instruction):  # whitespace, zero-width or bidi characters only
            return "empty"
        words = _WORD.findall(instruction.lower())
        if len(instruction) > cfg.max_chars or len(words) > cfg.max_words:
            return "too_long"
        if len(instruction) < cfg.min_chars or len(words) < cfg.min_words:
            return "too_short"
        visible = [c for c in instruction if not c.isspace()]
        if sum(c.isalpha() for c in visible) / len(visible) < cfg.min_alpha_ratio:
            return "mostly_non_alpha"
        if re.search(r"(.)\1{9,}", instruction):
            return "repetition"
        grams = _ngrams(words)
        if len(words) >= 8 and grams:
            repeated = len(grams) - len(set(grams))
            if repeated / len(grams) >= cfg.max_repeated_ngram_share:
                return "repetition"
        if any(p.search(instruction) for p in self.meta):
            return "meta_instruction"
        if any(p.search(instruction) for p in self.voice):
            return "assistant_voice"
        norm_ins = " ".join(words)
        if len(words) >= 4 and norm_ins in " ".join(_WORD.findall(output.lower())):
            return "echo"
        if echo_overlap(instruction, output) >= cfg.max_echo_overlap:
            return "echo"
        return None


# ---------------------------------------------------------------------------------------------
# runner

SEGMENT_COLUMNS = ["segment_id", "text"]


def load_segments(path: str | Path, cfg: AugmentConfig) -> pl.DataFrame:
    """The segments to augment: all, or a seeded sample of `max_segments`, in file order."""
    df = read_table(path, SEGMENT_COLUMNS)
    if df["segment_id"].is_duplicated().any():
        dup = df.filter(pl.col("segment_id").is_duplicated())["segment_id"][0]
        raise InputError(path, "duplicate segment_id", dup)
    for col in ("header", "doc_id"):
        if col not in df.columns:
            df = df.with_columns(pl.lit(None, dtype=pl.String).alias(col))
    df = df.select(
        pl.col("segment_id").cast(pl.String), pl.col("text").cast(pl.String),
        pl.col("header").cast(pl.String), pl.col("doc_id").cast(pl.String),
    )
    if 0 < cfg.max_segments < df.height:
        df = df.with_row_index("_i").sample(cfg.max_segments, seed=cfg.seed).sort("_i").drop("_i")
    return df


# Params that cannot change the chunk parts, each with the reason (see tests/test_fingerprints.py).
UNRECORDED = {
    "augment.max_segments": "selects the input rows, which the row digest covers",
    "augment.filter": "applied to the combined table after the chunks; the parts hold the raw generations",
    "prompts.seed_tag": "not in the backward model's prompt",
    "prompts.augmented_tag": "not in the backward model's prompt",
    "prompts.inference_system": "not in the backward model's prompt",
    "prompts.curation_template": "not in the backward model's prompt",
    "prompts.curation_ask_reasoning": "not in the backward model's prompt",
    "prompts.curation_ask_score": "not in the backward model's prompt",
} | ENGINE_UNRECORDED


def augment_settings(cfg: AugmentConfig, prompts: PromptsConfig, engine_cfg: EngineConfig,
                     model_dir: str | Path) -> dict:
    """What the generated instructions depend on besides the segments and the chunking."""
    # chunk_size is recorded by process_in_chunks itself
    sections = record({"augment": cfg, "prompts": prompts}, UNRECORDED.keys() | {"augment.chunk_size"})
    return {**sections, "engine": engine_settings(engine_cfg), "model": model_identity(model_dir, engine_cfg)}


def generate_instructions(
    segments: pl.DataFrame, engine: Engine, cfg: AugmentConfig, prompts: PromptsConfig, out: str | Path,
    *, engine_cfg: EngineConfig, model_dir: str | Path,
) -> pl.DataFrame:
    """Raw backward-model output per segment (`raw_instruction`), resumable in chunks at `out`."""

    def chunk(df: pl.DataFrame, i: int) -> pl.DataFrame:
        requests = [backward_messages(prompts, output=t) for t in df["text"]]
        texts = engine.generate(requests, cfg.sampling.at(cfg.seed + i), desc=f"augment chunk {i}")
        return df.with_columns(pl.Series("raw_instruction", texts, dtype=pl.String))

    settings = augment_settings(cfg, prompts, engine_cfg, model_dir)
    return process_in_chunks(segments, out, chunk, chunk_size=cfg.chunk_size, settings=settings, desc="augment")


class EvalPromptMatcher:
    """Which eval prompt an instruction copies: equal after normalising, or sharing `eval_ngram` words."""

    def __init__(self, texts: list[EvalText], cfg: FilterConfig):
        prompts = [t for t in texts if t.field == "instruction"]
        self.n = cfg.eval_ngram
        self.index = ContaminationIndex(prompts, self.n) if self.n else None
        self.equal = {}
        for t, norm in zip(prompts, normalise_texts([t.text for t in prompts]), strict=True):
            self.equal.setdefault(norm, t)

    def check(self, instructions: list[str]) -> list[str | None]:
        """The rejection detail of each instruction, or None."""
        norm = normalise_texts(instructions)
        out: list[str | None] = [f"{t.eval_id} instruction equal" if (t := self.equal.get(n)) else None for n in norm]
        if self.index is not None:
            for i, match in enumerate(self.index.check(pl.Series(norm, dtype=pl.String))):
                if out[i] is None and match is not None:
                    out[i] = describe(match, self.n)
        return out


def _eval_and_language(cleaned: list[str], outputs: list[str], reasons: list[str | None], cfg: FilterConfig,
                       matcher: EvalPromptMatcher | None) -> list[str | None]:
    """Details of the instructions that pass the degenerate filter but copy an eval prompt or change language
    (their reasons are set in `reasons`)."""
    details: list[str | None] = [None] * len(cleaned)
    rest = [i for i, r in enumerate(reasons) if r is None]
    if rest and matcher is not None:
        for i, detail in zip(rest, matcher.check([cleaned[i] for i in rest]), strict=True):
            if detail is not None:
                reasons[i], details[i] = "eval_prompt", detail
        rest = [i for i in rest if reasons[i] is None]
    if rest and cfg.min_language_prob <= 1:
        ins = detect([cleaned[i] for i in rest])
        seg = detect([outputs[i] for i in rest])
        for i, (lang, prob), (seg_lang, seg_prob) in zip(rest, ins, seg, strict=True):
            if lang != seg_lang and prob >= cfg.min_language_prob:
                reasons[i], details[i] = "language", f"{lang} {prob:.3f} (segment {seg_lang} {seg_prob:.3f})"
    return details


def filter_candidates(generated: pl.DataFrame, cfg: FilterConfig,
                      eval_texts: list[EvalText] | None = None) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Clean each instruction and split into (candidates, rejected-with-reason and detail).

    `eval_texts`: an instruction that copies one of their eval prompts is rejected (`eval_prompt`)."""
    filt = DegenerateFilter(cfg)
    cleaned = [clean_instruction(r) for r in generated["raw_instruction"]]
    outputs = generated["text"].to_list()
    reasons = [filt.reason(i, o) for i, o in zip(cleaned, outputs, strict=True)]
    matcher = EvalPromptMatcher(eval_texts, cfg) if eval_texts else None
    details = _eval_and_language(cleaned, outputs, reasons, cfg, matcher)
    df = generated.with_columns(
        pl.Series("instruction", cleaned, dtype=pl.String), pl.Series("reason", reasons, dtype=pl.String),
        pl.Series("detail", details, dtype=pl.String),
    ).rename({"text": "output"})
    kept = df.filter(pl.col("reason").is_null()).select("segment_id", "instruction", "output", "header", "doc_id")
    rejected = df.filter(pl.col("reason").is_not_null()).select(
        "segment_id", "instruction", "raw_instruction", "output", "header", "doc_id", "reason", "detail"
    )
    return kept, rejected


def augment_metrics(generated: pl.DataFrame, kept: pl.DataFrame, rejected: pl.DataFrame, seconds: float) -> dict:
    counts = Counter(rejected["reason"].to_list())

    def mean_len(s: pl.Series) -> float:
        return round(float(s.str.len_chars().mean()), 1) if s.len() else 0.0

    return {
        "segments_in": generated.height,
        "kept": kept.height,
        "rejected": rejected.height,
        "kept_share": round(kept.height / generated.height, 4) if generated.height else 0.0,
        "rejected_by_reason": {r: counts.get(r, 0) for r in REASONS},
        "mean_instruction_chars": mean_len(kept["instruction"]),
        "mean_instruction_words": round(float(kept["instruction"].str.count_matches(r"\w+").mean()), 1)
        if kept.height else 0.0,
        "mean_output_chars": mean_len(kept["output"]),
        "seconds": round(seconds, 1),
    }


def run_augment(
    segments_path: str | Path, engine: Engine, cfg: AugmentConfig, prompts: PromptsConfig, *,
    candidates_path: str | Path, rejected_path: str | Path, metrics_path: str | Path,
    engine_cfg: EngineConfig, model_dir: str | Path, eval_texts: list[EvalText] | None = None,
) -> dict:
    """Segments -> cleaned, filtered candidate pairs; rejected rows and metrics beside them.

    `eval_texts`: eval prompts no candidate instruction may copy (None: not checked)."""
    start = time.perf_counter()
    segments = load_segments(segments_path, cfg)
    # The chunk parts live beside the candidates file; the combined raw table is transient.
    raw_path = Path(candidates_path).with_name(".generated.parquet")
    generated = generate_instructions(segments, engine, cfg, prompts, raw_path, engine_cfg=engine_cfg,
                                      model_dir=model_dir)
    kept, rejected = filter_candidates(generated, cfg.filter, eval_texts)
    if kept.height:  # an empty candidates file would replace a previous good one just before the error
        write_parquet(kept, candidates_path)
    write_parquet(rejected, rejected_path)
    raw_path.unlink(missing_ok=True)
    metrics = augment_metrics(generated, kept, rejected, time.perf_counter() - start)
    write_json(metrics, metrics_path)
    if kept.height == 0:
        reasons = ", ".join(f"{r} {n}" for r, n in metrics["rejected_by_reason"].items() if n)
        raise EmptyResultError(
            f"{segments_path}: every one of the {generated.height} generated instructions was rejected "
            f"({reasons}); see {rejected_path} and check the backward model"
        )
    return metrics
