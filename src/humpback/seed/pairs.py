"""Read instruction/output pairs from any JSONL or Parquet table with configurable column names."""

from __future__ import annotations

from pathlib import Path

from humpback.errors import InputError
from humpback.readers import find_files, iter_records, path_text, text_fault
from humpback.seed.config import SeedSource

Row = dict[str, str | None]  # source, source_id, instruction, output, reason (None while still a candidate)


def text_field(value: object, path: Path, label: str, key: str) -> str:
    """A text value: str, or None read as empty; anything else is a malformed record."""
    if value is None:
        return ""
    fault = text_fault(value, key)
    if fault:
        raise InputError(path, fault, label)
    return value


def read_pairs(source: SeedSource, max_bytes: int | None = None) -> tuple[list[Row], dict]:
    """All pairs of a source as candidate rows, plus the counts for the metrics."""
    files = find_files(source.path)
    columns = [source.instruction_column, source.output_column]
    if source.id_column:
        columns.append(source.id_column)
    optional = (source.input_column,) if source.input_column else ()
    rows: list[Row] = []
    for path in files:
        for record in iter_records(path, columns, optional, max_line_bytes=max_bytes):
            rec, label = record.strict(), record.label
            instruction = text_field(rec[source.instruction_column], path, label, source.instruction_column).strip()
            if source.input_column:
                extra = text_field(rec.get(source.input_column), path, label, source.input_column).strip()
                if extra:
                    instruction = f"{instruction}\n\n{extra}"
            output = text_field(rec[source.output_column], path, label, source.output_column).strip()
            if source.id_column:
                raw_id = rec[source.id_column]
                if raw_id is None or isinstance(raw_id, (dict, list)):
                    raise InputError(path, f"'{source.id_column}' must be a string or number, got {raw_id!r}", label)
                source_id = str(raw_id)
            else:
                source_id = f"{path_text(path.name)}:{label}"
            rows.append({"source": source.label, "source_id": source_id, "instruction": instruction,
                         "output": output, "reason": None})
    return rows, {"files": [str(p) for p in files], "read": len(rows)}
