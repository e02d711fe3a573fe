"""Pairwise judging of a model's answers against a reference's, in both orders.

Per order the judge names the better of two answers shown as slot 1 and slot 2. Where the backend
gives next-token log-probabilities, the verdict is soft: P(slot 1) = p(label 1) / (p(label 1) + p(label 2))
after the reply prefix. Otherwise the generated text is parsed; an unparseable order counts as a tie
and is counted. Judging both orders and averaging cancels a judge's position bias.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from humpback.chunks import ENGINE_UNRECORDED, engine_settings, model_identity, process_in_chunks, record
from humpback.engines.base import Engine, Messages, Sampling
from humpback.engines.config import EngineConfig
from humpback.errors import redact_text
from humpback.evaluation.config import JudgeConfig
from humpback.evaluation.loading import judge_engine_config
from humpback.evaluation.metrics import paired_bootstrap, win_rate
from humpback.prompts import chat

# Judgements file columns; "first" = the order with the model's answer in slot 1.
JUDGEMENT_COLUMNS = [
    "prompt_id", "category", "instruction", "output", "reference_output",
    "verdict_model_first", "verdict_model_second", "method_model_first", "method_model_second",
    "p_model_first", "p_model_second", "preference", "length", "reference_length",
]


@dataclass
class Verdict:
    p_first: float  # probability that the answer in slot 1 is better (0.5 when unparsed)
    raw: str  # generated text, or the likelier label in logprob mode
    method: str  # "logprob" | "text" | "unparsed"


def judge_messages(cfg: JudgeConfig, instruction: str, output_1: str, output_2: str) -> Messages:
    return chat(cfg.template.format(instruction=instruction, output_1=output_1, output_2=output_2))


def parse_verdict(text: str, labels: Sequence[str] = ("1", "2"), prefix: str = "") -> int | None:
    """Index of the label the judge chose in free text, or None when it is absent or ambiguous.

    Accepts a bare label ("2"), a prefixed one ("Better answer: 2", "**2**"), or a sentence that
    names exactly one answer as better ("Answer 1 is better")."""
    t = text.strip()
    if prefix and t.lower().startswith(prefix.strip().lower()):
        t = t[len(prefix.strip()):]
    t = t.strip().strip("*_`'\"()[]").strip()
    alt = "|".join(re.escape(lb) for lb in labels)
    lead = re.match(rf"({alt})(?!\w|\.\d)", t)  # a bare label first: the format the template asks for
    if lead:
        return list(labels).index(lead.group(1))
    named: set[str] = set()
    for m in re.finditer(rf"answer\s*\(?({alt})\)?\s+is\s+(?:the\s+)?better", t, re.IGNORECASE):
        named.add(m.group(1))
    for m in re.finditer(rf"better\s+answer\s*(?:is|:)?\s*\(?(?:answer\s*)?({alt})(?![\w])", t, re.IGNORECASE):
        named.add(m.group(1))
    if len(named) == 1:
        return list(labels).index(named.pop())
    standalone = set(re.findall(rf"(?<![\w.])({alt})(?!\w|\.\d)", t))
    if len(standalone) == 1:
        return list(labels).index(standalone.pop())
    return None


def _softmax_first(lp1: float, lp2: float) -> float | None:
    if lp1 == -math.inf and lp2 == -math.inf:
        return None
    m = max(lp1, lp2)
    e1, e2 = math.exp(lp1 - m), math.exp(lp2 - m)
    return e1 / (e1 + e2)


class PairwiseJudge:
    """Judges (instruction, slot-1 answer, slot-2 answer) triples with one engine."""

    def __init__(self, engine: Engine | None, cfg: JudgeConfig):
        # engine may be None when every pair is identical: such pairs never reach the judge
        for key, problem in cfg.problems():  # the params check's rule, for a config built in code
            from humpback.errors import ConfigError
            raise ConfigError(f"judge.{key}: {problem}")
        self.engine, self.cfg = engine, cfg
        self.logprobs_supported = cfg.mode != "generate"

    def judge_slots(self, instructions: Sequence[str], outputs_1: Sequence[str], outputs_2: Sequence[str]) -> list[Verdict]:
        requests = [judge_messages(self.cfg, i, a, b) for i, a, b in zip(instructions, outputs_1, outputs_2, strict=True)]
        verdicts: list[Verdict | None] = [None] * len(requests)
        if self.logprobs_supported:
            try:
                scores = self.engine.choice_logprobs(requests, self.cfg.labels, assistant_prefix=self.cfg.prefix,
                                                     desc="judge")
            except NotImplementedError:
                if self.cfg.mode == "logprob":
                    raise
                self.logprobs_supported = False  # auto: this backend gives no log-probabilities
                scores = []
            for k, s in enumerate(scores):
                lab1, lab2 = self.cfg.labels
                p = _softmax_first(s.get(lab1, -math.inf), s.get(lab2, -math.inf))
                if p is not None:
                    verdicts[k] = Verdict(p, lab1 if p >= 0.5 else lab2, "logprob")
                elif self.cfg.mode == "logprob":
                    verdicts[k] = Verdict(0.5, "", "unparsed")
        todo = [k for k, v in enumerate(verdicts) if v is None]
        if todo:
            greedy = Sampling(temperature=0.0, top_p=1.0, max_new_tokens=self.cfg.max_new_tokens, seed=0)
            texts = self.engine.generate([requests[k] for k in todo], greedy, desc="judge")
            for k, text in zip(todo, texts, strict=True):
                choice = parse_verdict(text, self.cfg.labels, self.cfg.prefix)
                verdicts[k] = (Verdict(0.5, text, "unparsed") if choice is None
                               else Verdict(1.0 - choice, text, "text"))
        return verdicts  # type: ignore[return-value]

    def judge(self, pairs: pl.DataFrame) -> pl.DataFrame:
        """`pairs` has prompt_id, category, instruction, output, reference_output; returns JUDGEMENT_COLUMNS."""
        rows = pairs.to_dicts()
        todo = [r for r in rows if r["output"].strip() != r["reference_output"].strip()]
        ins = [r["instruction"] for r in todo]
        mod = [r["output"] for r in todo]
        ref = [r["reference_output"] for r in todo]
        first = self.judge_slots(ins, mod, ref) if todo else []
        second = self.judge_slots(ins, ref, mod) if todo else []
        judged = {id(r): (a, b) for r, a, b in zip(todo, first, second, strict=True)}
        out = []
        for r in rows:
            if id(r) in judged:
                a, b = judged[id(r)]
                p1, p2 = a.p_first, 1.0 - b.p_first  # P(model wins) in each order
                extra = (a.raw, b.raw, a.method, b.method, p1, p2, 1.0 + (p1 + p2) / 2)
            else:  # identical answers are an exact tie; the judge is not asked
                extra = ("", "", "identical", "identical", 0.5, 0.5, 1.5)
            out.append({
                **{k: r[k] for k in ("prompt_id", "category", "instruction", "output", "reference_output")},
                **dict(zip(JUDGEMENT_COLUMNS[5:12], extra, strict=True)),
                "length": len(r["output"]),
                "reference_length": len(r["reference_output"]),
            })
        return pl.DataFrame(out, schema=_SCHEMA)


_SCHEMA = {c: pl.String for c in JUDGEMENT_COLUMNS[:9]} | {
    "p_model_first": pl.Float64, "p_model_second": pl.Float64, "preference": pl.Float64,
    "length": pl.Int64, "reference_length": pl.Int64,
}


# Params that cannot change the judgements, each with the reason (see tests/test_fingerprints.py).
UNRECORDED = {
    "judge.reference": "the reference answers are in the input rows (reference_output), which the row digest covers",
    "judge.api_key_env": "names the variable that holds the key: authentication only",
    "judge.check": "picks which pairs the judge check asks about (the row digest covers them) and the "
                   "thresholds it reads its metrics against; no verdict depends on it",
} | ENGINE_UNRECORDED


def judge_settings(cfg: JudgeConfig, engine_cfg: EngineConfig, judge_dir: str | Path | None) -> dict:
    """What the judgements depend on besides the pairs and the chunking.

    The judge is the local model in `judge_dir`, or with `judge.base_url` the endpoint's served model."""
    model = model_identity(None if cfg.base_url else judge_dir, judge_engine_config(cfg, engine_cfg))
    # chunk_size is recorded by process_in_chunks itself
    sections = record({"judge": cfg}, UNRECORDED.keys() | {"judge.chunk_size"})
    return {**sections, "engine": engine_settings(engine_cfg), "model": model}


def judge_in_chunks(pairs: pl.DataFrame, judge: PairwiseJudge, out: str | Path, engine_cfg: EngineConfig,
                    judge_dir: str | Path | None, *, desc: str = "judge") -> pl.DataFrame:
    """Judge every pair, resumably in chunks of `judge.chunk_size` at `out`."""
    return process_in_chunks(pairs, out, lambda chunk, _i: judge.judge(chunk), chunk_size=judge.cfg.chunk_size,
                             settings=judge_settings(judge.cfg, engine_cfg, judge_dir), desc=desc)


def pair_outputs(model: pl.DataFrame, reference: pl.DataFrame) -> tuple[pl.DataFrame, int]:
    """Match the model's answers to the reference's by instruction; returns (pairs, n without a reference)."""
    ref = reference.select("instruction", pl.col("output").alias("reference_output"))
    pairs = model.select("prompt_id", "category", "instruction", "output").join(
        ref, on="instruction", how="left", maintain_order="left")
    missing = int(pairs["reference_output"].null_count())
    return pairs.drop_nulls("reference_output"), missing


def summarise(judgements: pl.DataFrame, *, judge: str, reference: str, n_missing_reference: int = 0) -> dict:
    """metrics/eval/<model>.json: win rates plus what was compared and how the verdicts were read. No
    length-controlled rate: a one-model fit is not AlpacaEval's LC, which the length_controlled stage
    fits over all models at once (metrics/eval/length_controlled.json)."""
    metrics = win_rate(judgements["preference"].to_list(), lengths=judgements["length"].to_list(),
                       ref_lengths=judgements["reference_length"].to_list(), length_controlled=False)
    del metrics["lc_win_rate"]
    # the 95% interval of the win rate over these prompts (percentile bootstrap, fixed seed: the same every run)
    boot = paired_bootstrap(judgements["preference"].to_list(), resamples=2000, seed=0)
    metrics.update(ci_low=boot["ci_low"], ci_high=boot["ci_high"])
    methods = pl.concat([judgements["method_model_first"], judgements["method_model_second"]]).value_counts()
    counts = dict(zip(methods[methods.columns[0]].to_list(), methods["count"].to_list(), strict=True))
    metrics.update({
        "judge": redact_text(judge),  # metrics/eval/*.json is tracked by git: never a credential
        "reference": reference,
        "unparsed_verdicts": int(counts.get("unparsed", 0)),
        "verdict_methods": {k: int(v) for k, v in sorted(counts.items())},
        "n_identical": int((judgements["method_model_first"] == "identical").sum()),
        "n_missing_reference": n_missing_reference,
    })
    return metrics
