"""The judge checks itself: intact reference answers against degraded copies of themselves.

A pair's better answer is known, so how often the judge picks it (discrimination) and how often its
verdict survives swapping the two slots (order consistency) say whether its win rates mean anything.
Three degradations, each deterministic for a seed:

* cut: the answer stops mid-sentence after about half of its words;
* shuffle: its sentences in another order (answers of fewer than two sentences are skipped);
* other_prompt: the answer to a different prompt of the subset (a seeded derangement).

Every pair is judged in both orders by the same PairwiseJudge as the judge stage.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import polars as pl

from humpback.chunks import process_in_chunks
from humpback.engines.config import EngineConfig
from humpback.evaluation.config import JudgeCheckConfig
from humpback.evaluation.judge import PairwiseJudge, judge_settings

KINDS = ("cut", "shuffle", "other_prompt")
_WORD = re.compile(r"\S+")
_SENTENCE_END = re.compile(r"[.!?…][\"')\]]*$")
_SENTENCE_SPLIT = re.compile(r"(?<=[.!?])\s+")
TIE = 1e-9  # soft probabilities this close to 0.5 are a tie

# The judge's columns renamed for what they hold here: the intact answer takes the judged model's
# place and the degraded copy the reference's, so p_intact_first = P(intact wins | intact in slot 1).
RENAME = {
    "category": "kind", "output": "intact", "reference_output": "degraded",
    "verdict_model_first": "verdict_intact_first", "verdict_model_second": "verdict_intact_second",
    "method_model_first": "method_intact_first", "method_model_second": "method_intact_second",
    "p_model_first": "p_intact_first", "p_model_second": "p_intact_second",
    "length": "intact_length", "reference_length": "degraded_length",
}


def cut_mid_sentence(text: str) -> str | None:
    """The first ~half of the words, cut inside a sentence with its end punctuation stripped;
    None for answers of fewer than four words."""
    words = list(_WORD.finditer(text))
    if len(words) < 4:
        return None
    keep = len(words) // 2
    # a cut right after a sentence's last word would leave a whole sentence: take the next word too
    while keep < len(words) - 1 and _SENTENCE_END.search(words[keep - 1].group()):
        keep += 1
    cut = text[:words[keep - 1].end()].rstrip(".!?…:;,\"')]")
    return cut if cut.strip() and len(cut) < len(text.rstrip()) else None


def sentences(text: str) -> list[str]:
    return [s for s in _SENTENCE_SPLIT.split(text.strip()) if s.strip()]


def shuffle_sentences(text: str, rng: np.random.Generator) -> str | None:
    """The sentences in a seeded other order; None for fewer than two or when every order reads the same."""
    parts = sentences(text)
    if len(parts) < 2:
        return None
    order = rng.permutation(len(parts))
    if np.array_equal(order, np.arange(len(parts))):
        order = np.roll(order, 1)  # never the original order
    shuffled = " ".join(parts[i] for i in order)
    return None if shuffled == " ".join(parts) else shuffled


def derangement(n: int, rng: np.random.Generator) -> np.ndarray:
    """other[i] != i for every i (n >= 2): a seeded order, each index mapped to the next one in it."""
    order = rng.permutation(n)
    other = np.empty(n, dtype=int)
    other[order] = np.roll(order, -1)
    return other


def check_pairs(reference: pl.DataFrame, cfg: JudgeCheckConfig) -> pl.DataFrame:
    """Pairs of (intact, degraded) answers from `reference` (instruction, output), deterministic for cfg.seed.

    Columns prompt_id ("a<row>"), category (the degradation kind), instruction, output (intact),
    reference_output (degraded), as PairwiseJudge.judge takes them."""
    rows = reference.select("instruction", "output").with_row_index("row")
    rows = rows.filter(pl.col("output").str.strip_chars() != "")
    if cfg.max_answers and rows.height > cfg.max_answers:
        pick = np.sort(np.random.default_rng(cfg.seed).choice(rows.height, cfg.max_answers, replace=False))
        rows = rows[pick.tolist()]
    recs = rows.to_dicts()
    other = derangement(len(recs), np.random.default_rng([cfg.seed, 1])) if len(recs) >= 2 else None
    out = []
    for k, r in enumerate(recs):
        degraded = {
            "cut": cut_mid_sentence(r["output"]),
            # each answer's own stream: its shuffle does not depend on which others were picked
            "shuffle": shuffle_sentences(r["output"], np.random.default_rng([cfg.seed, 2, r["row"]])),
            "other_prompt": recs[other[k]]["output"] if other is not None else None,
        }
        for kind in KINDS:
            d = degraded[kind]
            if d is not None and d.strip() != r["output"].strip():
                out.append({"prompt_id": f"a{r['row']}", "category": kind, "instruction": r["instruction"],
                            "output": r["output"], "reference_output": d})
    schema = {c: pl.String for c in ("prompt_id", "category", "instruction", "output", "reference_output")}
    return pl.DataFrame(out, schema=schema)


def judge_check_in_chunks(pairs: pl.DataFrame, judge: PairwiseJudge, out: str | Path, engine_cfg: EngineConfig,
                          judge_dir: str | Path | None) -> pl.DataFrame:
    """Judge every pair in both orders, resumably in chunks of `judge.chunk_size` at `out` (RENAME's columns)."""
    return process_in_chunks(pairs, out, lambda chunk, _i: judge.judge(chunk).rename(RENAME),
                             chunk_size=judge.cfg.chunk_size,
                             settings=judge_settings(judge.cfg, engine_cfg, judge_dir), desc="judge check")


def _hard(p: np.ndarray) -> np.ndarray:
    """+1 where the intact answer wins an order, -1 where the degraded one does, 0 for a tie."""
    return np.where(np.abs(p - 0.5) <= TIE, 0, np.sign(p - 0.5)).astype(int)


def check_stats(judgements: pl.DataFrame) -> dict:
    """discrimination, order_consistency, first_slot_rate, mean_p_intact and n over the rows given.

    discrimination: share of pairs whose soft preference, averaged over both orders, favours the
    intact answer (a tie counts half); order_consistency: share of pairs whose hard verdict is the
    same answer in both orders (a tie in either order is no verdict that survives); first_slot_rate:
    share of the 2n orders won by slot 1 (ties half), 0.5 for a judge without position bias."""
    n = judgements.height
    if n == 0:
        return {"discrimination": None, "order_consistency": None, "first_slot_rate": None,
                "mean_p_intact": None, "n": 0}
    p1 = judgements["p_intact_first"].to_numpy()
    p2 = judgements["p_intact_second"].to_numpy()
    soft = (p1 + p2) / 2
    disc = np.where(np.abs(soft - 0.5) <= TIE, 0.5, (soft > 0.5).astype(float))
    h1, h2 = _hard(p1), _hard(p2)
    consistent = (h1 != 0) & (h1 == h2)
    # slot 1 holds the intact answer in the first order and the degraded one in the second
    slot1 = np.concatenate([(h1 + 1) / 2, (1 - h2) / 2])
    return {"discrimination": float(disc.mean()), "order_consistency": float(consistent.mean()),
            "first_slot_rate": float(slot1.mean()), "mean_p_intact": float(soft.mean()), "n": n}


def summarise_check(judgements: pl.DataFrame, cfg: JudgeCheckConfig, *, judge: str, reference: str) -> dict:
    """metrics/eval/judge_check.json: the stats over all pairs and per degradation kind, and the verdict."""
    overall = check_stats(judgements)
    by_kind = {kind: check_stats(judgements.filter(pl.col("kind") == kind)) for kind in KINDS}
    trustworthy = bool(overall["n"] and overall["discrimination"] >= cfg.min_discrimination
                       and overall["order_consistency"] >= cfg.min_order_consistency)
    methods = pl.concat([judgements["method_intact_first"], judgements["method_intact_second"]])
    return {
        **overall,
        "trustworthy": trustworthy,
        "thresholds": {"discrimination": cfg.min_discrimination, "order_consistency": cfg.min_order_consistency},
        "by_degradation": by_kind,
        "unparsed_verdicts": int((methods == "unparsed").sum()),
        "n_answers": judgements["prompt_id"].n_unique() if judgements.height else 0,
        "judge": judge,
        "reference": reference,
    }
