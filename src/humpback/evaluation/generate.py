"""Answers of one model to the eval prompts, resumable by chunk, plus the AlpacaEval export."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import polars as pl

from humpback.chunks import process_in_chunks
from humpback.engines.base import Engine, Sampling
from humpback.prompts import forward_messages

OUTPUT_COLUMNS = ["prompt_id", "category", "instruction", "output", "generator"]


def generate_answers(
    engine: Engine,
    prompts: pl.DataFrame,
    out: str | Path,
    *,
    system: str,
    sampling: Sampling,
    generator: str,
    chunk_size: int,
) -> pl.DataFrame:
    """Answer every prompt (prompt_id, category, instruction) with the inference system prompt.

    Each chunk samples with seed + chunk index, so a resumed run writes what an uninterrupted one would."""

    def run(chunk: pl.DataFrame, index: int) -> pl.DataFrame:
        requests = [forward_messages(system, ins) for ins in chunk["instruction"]]
        chunk_sampling = dataclasses.replace(sampling, seed=sampling.seed + index)
        texts = engine.generate(requests, chunk_sampling, desc=f"generate {generator}")
        return chunk.select("prompt_id", "category", "instruction").with_columns(
            pl.Series("output", [t.strip() for t in texts], dtype=pl.String),
            pl.lit(generator).alias("generator"),
        )

    settings = {"system": system, "sampling": dataclasses.asdict(sampling), "generator": generator}
    return process_in_chunks(prompts, out, run, chunk_size=chunk_size, settings=settings, desc=f"generate {generator}")


def alpaca_records(outputs: pl.DataFrame) -> list[dict]:
    """AlpacaEval `model_outputs.json`: [{instruction, output, generator, dataset}], dataset = our category."""
    return [
        {"instruction": r["instruction"], "output": r["output"], "generator": r["generator"], "dataset": r["category"]}
        for r in outputs.iter_rows(named=True)
    ]
