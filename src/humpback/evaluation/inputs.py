"""Loaders for eval prompts and for reference/model outputs.

Accepted files:
* our prompts JSONL: {id, category, instruction} per line;
* AlpacaEval JSON: a list of {instruction, output, generator, dataset} (its eval set or any model_outputs.json);
* any JSONL/Parquet with an instruction column (and, for outputs, an output column).
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from humpback.errors import InputError
from humpback.readers import TABLE_SUFFIXES, check_file, iter_records, object_fault, read_json, text_fault
from humpback.text import has_visible

PROMPT_COLUMNS = ["prompt_id", "category", "instruction"]
Label = int | str  # a JSON list index, or the table reader's "line 12" / "row 40"


def read_alpaca_json(path: Path, required: list[str]) -> list[tuple[Label, dict]]:
    """An AlpacaEval JSON file: a list of objects, each labelled by its index."""
    data = read_json(path)
    if not isinstance(data, list):
        raise InputError(path, f"expected a JSON list of {{instruction, output, ...}}, got {type(data).__name__}")
    if not data:
        raise InputError(path, "no records")
    for i, rec in enumerate(data):
        if (fault := object_fault(rec, required)) is not None:
            raise InputError(path, fault.message, i)
    return list(enumerate(data))


def read_records(path: str | Path, required: list[str]) -> list[tuple[Label, dict]]:
    """A .json file is AlpacaEval format; .jsonl(.gz)/.parquet go through the shared record reader."""
    path = check_file(path, (".json", *TABLE_SUFFIXES))
    if path.name.lower().endswith(".json"):
        return read_alpaca_json(path, required)
    return [(r.label, r.strict()) for r in iter_records(path, required)]


def _text(path: Path, label: Label, rec: dict, column: str, *, allow_empty: bool = False) -> str:
    value = rec[column]
    if (fault := text_fault(value, column)) is not None:
        raise InputError(path, fault, label)
    if not allow_empty and not has_visible(value):
        raise InputError(path, f"empty '{column}' (no visible character)", label)
    return value


def _unique(path: Path, labelled: list[tuple[Label, str]], what: str, why: str = "") -> None:
    seen: dict[str, Label] = {}
    for label, v in labelled:
        if v in seen:
            raise InputError(path, f"duplicate {what} {v[:60]!r} (first at record {seen[v]}){why}", label)
        seen[v] = label


def load_prompts(
    path: str | Path,
    *,
    instruction_column: str = "instruction",
    id_column: str = "id",
    category_column: str = "category",
) -> pl.DataFrame:
    """Eval prompts as (prompt_id, category, instruction), in file order, ids unique."""
    path = Path(path)
    records = read_records(path, [instruction_column])
    instructions = [_text(path, label, rec, instruction_column) for label, rec in records]
    keys = set().union(*(rec.keys() for _, rec in records))  # a column is there when any record has it
    if id_column in keys:
        ids = []
        for label, rec in records:
            if rec.get(id_column) is None or rec[id_column] == "":
                raise InputError(path, f"missing '{id_column}'", label)
            ids.append(str(rec[id_column]))
        _unique(path, [(label, v) for (label, _), v in zip(records, ids, strict=True)], "id")
    else:
        ids = [f"p{i:04d}" for i in range(len(records))]
    cat_col = category_column if category_column in keys else ("dataset" if "dataset" in keys else None)
    cats = [str(rec[cat_col]) if cat_col and rec.get(cat_col) else "general" for _, rec in records]
    return pl.DataFrame({"prompt_id": ids, "category": cats, "instruction": instructions},
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
    records = read_records(path, [instruction_column, output_column])
    instructions = [_text(path, label, rec, instruction_column) for label, rec in records]
    outputs = [_text(path, label, rec, output_column, allow_empty=True) for label, rec in records]
    _unique(path, [(label, v) for (label, _), v in zip(records, instructions, strict=True)], "instruction",
            "; outputs are matched to prompts by instruction")
    generators = [path.stem if rec.get("generator") is None else str(rec["generator"]) for _, rec in records]
    return pl.DataFrame({"instruction": instructions, "output": outputs, "generator": generators},
                        schema={c: pl.String for c in ("instruction", "output", "generator")})
