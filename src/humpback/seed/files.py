"""Find the files of a seed source and read their records with a label that names each one.

Records come back as plain dicts; the label ("line 12", "row 40") goes into every error so a user
can find the bad record. Parquet is read column-wise with pyarrow, JSONL line by line.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from humpback.errors import InputError
from humpback.io import iter_jsonl

JSONL_SUFFIXES = (".jsonl", ".jsonl.gz", ".ndjson", ".ndjson.gz", ".json.gz")
PARQUET_SUFFIXES = (".parquet",)


def is_parquet(path: Path) -> bool:
    return path.name.lower().endswith(PARQUET_SUFFIXES)


def _supported(path: Path) -> bool:
    return path.name.lower().endswith(JSONL_SUFFIXES + PARQUET_SUFFIXES)


def resolve_files(path: str | Path) -> list[Path]:
    """The readable files a source path names: the file itself, or every supported file under a directory."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and _supported(p) and not p.name.startswith("."))
        if not files:
            raise InputError(path, "directory holds no .jsonl, .jsonl.gz or .parquet files")
        return files
    if not path.exists():
        raise InputError(path, "file not found")
    if not _supported(path):
        raise InputError(path, "unsupported file type (expected .jsonl, .jsonl.gz or .parquet)")
    return [path]


def first_record(path: Path) -> dict | None:
    """The first JSON object of a JSONL file (None when it has none), to tell layouts apart."""
    for _, obj in iter_jsonl(path):
        return obj
    return None


def parquet_columns(path: Path) -> list[str]:
    try:
        return list(pq.read_schema(path).names)
    except (pa.ArrowException, OSError) as e:
        raise InputError(path, f"not a readable Parquet file: {e}") from None


def iter_records(path: Path, columns: list[str], optional: tuple[str, ...] = ()) -> Iterator[tuple[str, dict]]:
    """Yield (label, record) with `columns` required and `optional` read when present.

    A column missing from a Parquet schema, or a key missing from a JSONL record, is an InputError.
    """
    if is_parquet(path):
        present = parquet_columns(path)
        missing = [c for c in columns if c not in present]
        if missing:
            raise InputError(path, f"missing column(s) {', '.join(missing)}; has: {', '.join(present)}")
        wanted = list(dict.fromkeys([*columns, *(c for c in optional if c in present)]))
        try:
            pf = pq.ParquetFile(path)
            row = 0
            for batch in pf.iter_batches(columns=wanted, batch_size=8192):
                for rec in batch.to_pylist():
                    yield f"row {row}", rec
                    row += 1
        except (pa.ArrowException, OSError) as e:
            raise InputError(path, f"not a readable Parquet file: {e}") from None
        return
    for lineno, obj in iter_jsonl(path):
        missing = [c for c in columns if c not in obj]
        if missing:
            raise InputError(path, f"missing key(s) {', '.join(missing)}; has: {', '.join(obj)}", f"line {lineno}")
        yield f"line {lineno}", obj


def text_field(value: object, path: Path, label: str, key: str) -> str:
    """A text value: str, or None read as empty; anything else is a malformed record."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InputError(path, f"'{key}' must be a string, got {type(value).__name__}: {repr(value)[:60]}", label)
    return value
