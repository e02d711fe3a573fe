"""Params of the evaluation stages: `eval` (generate answers, report) and `judge` (pairwise judging)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from humpback.config import (
    command_path_problem,
    env_name_problem,
    excerpt,
    name_problem,
    param,
    read_path_problem,
    seed_param,
)
from humpback.sampling import SamplingParams

# The judge sees one instruction and two answers and replies with the label of the better one.
# Labels are the digits 1 and 2, single tokens in every tokenizer we use, so the next-token
# probabilities after JUDGE_PREFIX give a soft verdict in one forward pass.
JUDGE_TEMPLATE = """You are comparing two answers to the same user instruction. Decide which answer serves the user better: it follows the instruction, is correct, helpful and clearly written. Judge the content, not the length: a longer answer is not better for being longer. Do not let the order in which the answers appear sway you.

Instruction:
{instruction}

Answer 1:
{output_1}

Answer 2:
{output_2}

Reply with a single character: 1 if Answer 1 is better, 2 if Answer 2 is better."""

# The judge's reply begins with this; the verdict digit is the next token.
JUDGE_PREFIX = "Better answer: "


@dataclass
class PairedConfig:
    """The paired bootstrap over prompts of each consecutive comparison (stage paired)."""

    resamples: int = param(2000, ge=100)  # fewer makes the 2.5% and 97.5% percentiles themselves noisy
    seed: int = seed_param(0)


@dataclass
class JudgeCheckConfig:
    """The judge's own test (stage judge_check): intact reference answers vs degraded copies."""

    max_answers: int = param(40, ge=0)  # seeded subset of the reference answers; 0 = all
    seed: int = seed_param(0)
    # A judge at chance scores 0.5 on discrimination and about 0.5 on order consistency (a judge
    # that always picks slot 1 scores 0 on the latter). With 40 answers x 3 degradations, about 120
    # pairs, the standard error of a share near 0.5 is about 0.046: 0.6 is two of them above chance.
    min_discrimination: float = param(0.6, ge=0, le=1)
    min_order_consistency: float = param(0.6, ge=0, le=1)


@dataclass
class EvalConfig:
    # Eval prompts: our JSONL ({id, category, instruction}), an AlpacaEval eval-set JSON
    # (list of {instruction, output, generator, dataset}) or any JSONL/Parquet with an instruction column.
    prompts: str = "data/eval/prompts.jsonl"
    instruction_column: str = "instruction"
    id_column: str = "id"  # missing column -> ids p0000, p0001, ... in file order
    category_column: str = "category"  # missing column -> "general" (AlpacaEval JSON: its `dataset`)
    # Deterministic subset, balanced over categories (0 = all). 40 prompts x 128 new tokens keeps
    # the CPU default (four 135M models + the judge) to minutes.
    max_prompts: int = param(40, ge=0)
    sampling: SamplingParams = field(default_factory=lambda: SamplingParams(max_new_tokens=128))
    seed: int = seed_param(1234)  # chunk i samples with seed + i
    chunk_size: int = param(16, ge=1)  # prompts per resumable part
    # Models compared and reported, each a directory models/<name>.
    models: list[str] = field(default_factory=lambda: ["base", "m0", "it1", "it2"])
    # Curation quality: a JSONL/Parquet of <id> -> label (bool) or score (1-5) from a stronger judge;
    # empty = not measured. A score counts as positive at >= curation_label_threshold.
    curation_labels: str = ""
    curation_id_column: str = "segment_id"
    curation_label_threshold: int = param(5, ge=1, le=5)
    paired: PairedConfig = field(default_factory=PairedConfig)  # consecutive models head to head
    # Length-controlled win rate (stage length_controlled): sklearn's C of the joint GLM, the inverse
    # strength of the L2 penalty on the length slopes and the instruction difficulties.
    lc_regularization: float = param(10.0, gt=0, le=1e6)

    def problems(self) -> list[tuple[str, str]]:
        """dvc.yaml makes a generate@ and a judge@ stage of every model (its name in their paths and
        commands) and passes `prompts` on the command line: config.command_word_problems says the same
        for the raw file, before any section is read."""
        out = [("prompts", p)] if (p := command_path_problem(self.prompts)) else []
        seen = set()
        for i, m in enumerate(self.models):
            if (p := name_problem(m)):
                out.append((f"models[{i}]", p))
            elif m in seen:
                out.append((f"models[{i}]", f"'{m}' is listed twice (dvc.yaml would make two stages of one name)"))
            seen.add(m)
        if not self.models:
            out.append(("models", "empty: name the models to compare (base, m0, it1, ...)"))
        if self.curation_labels and (p := read_path_problem(self.curation_labels)):
            out.append(("curation_labels", p))
        out += [(key, "empty: name the column") for key in ("instruction_column", "curation_id_column")
                if not getattr(self, key).strip()]
        return out


@dataclass
class JudgeConfig:
    # The reference answers: a model's outputs (data/eval/outputs/<model>.parquet) or any outputs
    # file (Parquet/JSONL with instruction+output, or AlpacaEval JSON). dvc.yaml passes it to judge.
    reference: str = "data/eval/outputs/base.parquet"
    # The local judge, a model name under models/ ("base"); dvc.yaml depends on models/<model>, so
    # it names a model the pipeline builds even when an endpoint judges.
    model: str = "base"
    # An OpenAI-compatible endpoint judges instead when base_url is set (no dvc.yaml edit): it
    # serves `served_model` (empty = `model`), through the chat or the completions api.
    base_url: str = ""  # e.g. http://localhost:8000/v1; empty = the local model through load_engine
    served_model: str = ""  # e.g. gpt-4-0613
    api: Literal["chat", "completions"] = "chat"
    api_key_env: str = "OPENAI_API_KEY"  # env var holding the endpoint's key (may be unset locally)
    # auto: next-token probabilities of the two labels where the backend gives them, else parsed text.
    mode: Literal["auto", "logprob", "generate"] = "auto"
    template: str = JUDGE_TEMPLATE  # fields: {instruction}, {output_1}, {output_2}
    prefix: str = JUDGE_PREFIX  # the reply's start; the verdict label is the next token
    labels: list[str] = field(default_factory=lambda: ["1", "2"])
    max_new_tokens: int = param(16, ge=1)  # generate mode: a verdict is short
    chunk_size: int = param(16, ge=1)  # prompts per resumable part
    check: JudgeCheckConfig = field(default_factory=JudgeCheckConfig)  # stage judge_check

    def problems(self) -> list[tuple[str, str]]:
        """`model` and `reference` reach dvc.yaml's judge command and deps (models/<model>)."""
        out = [("model", p)] if (p := name_problem(self.model)) else []
        if (p := command_path_problem(self.reference)):
            out.append(("reference", p))
        if (p := env_name_problem(self.api_key_env)):
            out.append(("api_key_env", p))
        if len(self.labels) != 2 or len(set(self.labels)) != 2 or not all(lab.strip() for lab in self.labels):
            out.append(("labels", f"expected two distinct non-blank labels, got {excerpt(self.labels)}"))
        return out
