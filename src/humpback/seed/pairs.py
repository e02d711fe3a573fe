"""Read instruction/output pairs from any JSONL or Parquet table with configurable column names."""

from __future__ import annotations

from humpback.errors import InputError
from humpback.seed.config import SeedSource
from humpback.seed.files import iter_records, resolve_files, text_field

Row = dict[str, str | None]  # source, source_id, instruction, output, reason (None while still a candidate)


def read_pairs(source: SeedSource) -> tuple[list[Row], dict]:
    """All pairs of a source as candidate rows, plus the counts for the metrics."""
    files = resolve_files(source.path)
    columns = [source.instruction_column, source.output_column]
    if source.id_column:
        columns.append(source.id_column)
    optional = (source.input_column,) if source.input_column else ()
    rows: list[Row] = []
    for path in files:
        for label, rec in iter_records(path, columns, optional):
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
                source_id = f"{path.name}:{label}"
            rows.append({"source": source.label, "source_id": source_id, "instruction": instruction,
                         "output": output, "reason": None})
    if not rows:
        raise InputError(source.path, "no records")
    return rows, {"files": [str(p) for p in files], "read": len(rows)}
