"""Answers of one model to the eval prompts, resumable by chunk, plus the AlpacaEval export."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from humpback.chunks import ENGINE_UNRECORDED, engine_settings, model_identity, process_in_chunks, record
from humpback.engines.base import Engine
from humpback.engines.config import EngineConfig
from humpback.evaluation.config import EvalConfig
from humpback.prompts import PromptsConfig, forward_messages

OUTPUT_COLUMNS = ["prompt_id", "category", "instruction", "output", "generator"]

_ROWS = "selects or shapes the input rows, which the row digest covers"
_REPORT = "read by the report stage only"
# Params that cannot change the answers, each with the reason (see tests/test_fingerprints.py).
UNRECORDED = {
    "eval.prompts": _ROWS,
    "eval.instruction_column": _ROWS,
    "eval.id_column": _ROWS,
    "eval.category_column": _ROWS,
    "eval.max_prompts": _ROWS,
    "eval.models": _REPORT,
    "eval.curation_labels": _REPORT,
    "eval.curation_id_column": _REPORT,
    "eval.curation_label_threshold": _REPORT,
    "eval.lc_regularization": "read by the length_controlled stage only",
    "prompts.seed_tag": "a training tag; the answering prompt is prompts.inference_system",
    "prompts.augmented_tag": "a training tag; the answering prompt is prompts.inference_system",
    "prompts.backward_template": "not in the answering prompt",
    "prompts.curation_template": "not in the answering prompt",
    "prompts.curation_ask_reasoning": "not in the answering prompt",
    "prompts.curation_ask_score": "not in the answering prompt",
} | ENGINE_UNRECORDED


def generate_settings(cfg: EvalConfig, prompts: PromptsConfig, engine_cfg: EngineConfig, model_dir: str | Path,
                      generator: str) -> dict:
    """What the answers depend on besides the eval prompts and the chunking."""
    # chunk_size is recorded by process_in_chunks itself
    sections = record({"eval": cfg, "prompts": prompts}, UNRECORDED.keys() | {"eval.chunk_size"})
    return {**sections, "generator": generator, "engine": engine_settings(engine_cfg),
            "model": model_identity(model_dir, engine_cfg)}


def generate_answers(
    engine: Engine,
    prompts: pl.DataFrame,
    out: str | Path,
    *,
    cfg: EvalConfig,
    prompts_cfg: PromptsConfig,
    engine_cfg: EngineConfig,
    model_dir: str | Path,
    generator: str,
) -> pl.DataFrame:
    """Answer every prompt (prompt_id, category, instruction) with the inference system prompt.

    Each chunk samples with seed + chunk index, so a resumed run writes what an uninterrupted one would."""
    system = prompts_cfg.inference_system

    def run(chunk: pl.DataFrame, index: int) -> pl.DataFrame:
        requests = [forward_messages(system, ins) for ins in chunk["instruction"]]
        texts = engine.generate(requests, cfg.sampling.at(cfg.seed + index), desc=f"generate {generator}")
        return chunk.select("prompt_id", "category", "instruction").with_columns(
            pl.Series("output", [t.strip() for t in texts], dtype=pl.String),
            pl.lit(generator).alias("generator"),
        )

    settings = generate_settings(cfg, prompts_cfg, engine_cfg, model_dir, generator)
    return process_in_chunks(prompts, out, run, chunk_size=cfg.chunk_size, settings=settings,
                             desc=f"generate {generator}")


def alpaca_records(outputs: pl.DataFrame) -> list[dict]:
    """AlpacaEval `model_outputs.json`: [{instruction, output, generator, dataset}], dataset = our category."""
    return [
        {"instruction": r["instruction"], "output": r["output"], "generator": r["generator"], "dataset": r["category"]}
        for r in outputs.iter_rows(named=True)
    ]
