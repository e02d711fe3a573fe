"""Loaders for eval prompts and for reference/model outputs.

Accepted files:
* our prompts JSONL: {id, category, instruction} per line;
* AlpacaEval JSON: a list of {instruction, output, generator, dataset} (its eval set or any model_outputs.json);
* any JSONL/Parquet with an instruction column (and, for outputs, an output column).
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from humpback.errors import InputError
from humpback.io import has_lone_surrogate, read_json, read_table

PROMPT_COLUMNS = ["prompt_id", "category", "instruction"]


def read_alpaca_json(path: str | Path) -> pl.DataFrame:
    """An AlpacaEval JSON file: a list of objects, each with a non-empty string `instruction`."""
    data = read_json(path)
    if not isinstance(data, list):
        raise InputError(path, f"expected a JSON list of {{instruction, output, ...}}, got {type(data).__name__}")
    if not data:
        raise InputError(path, "no records")
    for i, rec in enumerate(data):
        if not isinstance(rec, dict):
            raise InputError(path, f"expected an object, got {type(rec).__name__}", i)
        for key in ("instruction", "output"):
            if key in rec and not isinstance(rec[key], str):
                raise InputError(path, f"'{key}' must be a string, got {type(rec[key]).__name__}", i)
        if has_lone_surrogate(rec):
            raise InputError(path, "a string holds an unpaired UTF-16 surrogate escape (not valid text)", i)
    rows = [{k: (v if isinstance(v, str) or v is None else json.dumps(v)) for k, v in rec.items()} for rec in data]
    return pl.DataFrame(rows, infer_schema_length=None)


def read_any(path: str | Path) -> pl.DataFrame:
    """A .json file is AlpacaEval format; .jsonl(.gz)/.parquet go through the common table reader."""
    path = Path(path)
    if path.name.lower().endswith(".json"):
        return read_alpaca_json(path)
    return read_table(path)


def _check_text(df: pl.DataFrame, column: str, path: Path, *, allow_empty: bool = False) -> None:
    if column not in df.columns:
        raise InputError(path, f"missing column '{column}'; has: {', '.join(df.columns)}")
    for i, value in enumerate(df[column].to_list()):
        if not isinstance(value, str):
            raise InputError(path, f"'{column}' must be a string, got {type(value).__name__}", i)
        if not allow_empty and not value.strip():
            raise InputError(path, f"empty '{column}'", i)


def load_prompts(
    path: str | Path,
    *,
    instruction_column: str = "instruction",
    id_column: str = "id",
    category_column: str = "category",
) -> pl.DataFrame:
    """Eval prompts as (prompt_id, category, instruction), in file order, ids unique."""
    path = Path(path)
    df = read_any(path)
    _check_text(df, instruction_column, path)
    n = df.height
    if id_column in df.columns:
        ids = [str(v) if v is not None else None for v in df[id_column].to_list()]
        for i, v in enumerate(ids):
            if not v:
                raise InputError(path, f"missing '{id_column}'", i)
    else:
        ids = [f"p{i:04d}" for i in range(n)]
    seen: dict[str, int] = {}
    for i, v in enumerate(ids):
        if v in seen:
            raise InputError(path, f"duplicate id '{v}' (first at record {seen[v]})", i)
        seen[v] = i
    cat_col = category_column if category_column in df.columns else ("dataset" if "dataset" in df.columns else None)
    cats = [str(v) if v else "general" for v in df[cat_col].to_list()] if cat_col else ["general"] * n
    return pl.DataFrame({"prompt_id": ids, "category": cats, "instruction": df[instruction_column].to_list()},
                        schema={c: pl.String for c in PROMPT_COLUMNS})


def subset(prompts: pl.DataFrame, max_prompts: int) -> pl.DataFrame:
    """A deterministic subset of at most `max_prompts`, balanced over categories: take the first prompt
    of every category, then the second of each, and so on (categories in order of first appearance)."""
    if max_prompts <= 0 or prompts.height <= max_prompts:
        return prompts
    ranked = prompts.with_row_index("_row").with_columns(
        pl.col("_row").rank("ordinal").over("category").alias("_rank"),
        pl.col("_row").min().over("category").alias("_cat_first"),
    )
    picked = ranked.sort(["_rank", "_cat_first"]).head(max_prompts)
    return picked.sort("_row").drop(["_row", "_rank", "_cat_first"])


def load_outputs(path: str | Path, *, instruction_column: str = "instruction", output_column: str = "output") -> pl.DataFrame:
    """Answers of some model as (instruction, output, generator): our outputs Parquet, AlpacaEval JSON,
    or any JSONL/Parquet with instruction and output columns. Instructions must be unique."""
    path = Path(path)
    df = read_any(path)
    _check_text(df, instruction_column, path)
    _check_text(df, output_column, path, allow_empty=True)
    generator = df["generator"].cast(pl.String) if "generator" in df.columns else pl.Series([path.stem] * df.height)
    out = pl.DataFrame({
        "instruction": df[instruction_column],
        "output": df[output_column],
        "generator": generator.fill_null(path.stem),
    })
    dup = out.with_row_index("_row").filter(pl.col("instruction").is_duplicated())
    if dup.height:
        raise InputError(path, "duplicate instruction; outputs are matched to prompts by instruction", int(dup["_row"][1]))
    return out
