"""Atomic writes and strict readers shared by every stage.

Every output is written to a temporary file in the same directory and renamed into place, so a
stage killed mid-write leaves the previous output or none, never a half file.
"""

from __future__ import annotations

import contextlib
import glob
import gzip
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl

from humpback.errors import InputError


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it over `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):  # left by a killed earlier run
        stale.unlink(missing_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_parquet(df: pl.DataFrame, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        df.write_parquet(tmp)


def write_json(obj: Any, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False, default=_jsonable) + "\n", encoding="utf-8")


def write_jsonl(rows: list[dict], path: str | Path) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False, default=_jsonable) + "\n")


def write_text(text: str, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _jsonable(o: Any) -> Any:
    if hasattr(o, "item"):  # numpy scalars
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def open_text(path: str | Path):
    """Open a text file, transparently gunzipping `.gz`."""
    path = Path(path)
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8-sig")
    return open(path, encoding="utf-8-sig")  # -sig: a byte-order mark left by an editor is not part of the data


def has_lone_surrogate(obj: Any) -> bool:
    """True when a decoded JSON value holds a lone surrogate ("\\ud800"): valid JSON, but not text
    that can be written as UTF-8 (Parquet, hashing), so it would crash a later step."""
    try:
        json.dumps(obj, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, dict]]:
    """Yield (line number, object) for each non-blank line; any fault names the file and the line."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file not found")
    try:
        with open_text(path) as f:
            for lineno, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as e:
                    raise InputError(path, f"malformed JSON ({e.msg} at column {e.colno})", f"line {lineno}") from None
                except RecursionError:
                    raise InputError(path, "malformed JSON (nested too deeply)", f"line {lineno}") from None
                if not isinstance(obj, dict):
                    raise InputError(path, f"expected a JSON object, got {type(obj).__name__}", f"line {lineno}")
                if "\\ud" in line.lower() and has_lone_surrogate(obj):
                    raise InputError(path, "a string holds an unpaired UTF-16 surrogate escape (not valid text)",
                                     f"line {lineno}")
                yield lineno, obj
    except UnicodeDecodeError as e:
        raise InputError(path, f"not valid UTF-8 ({e.reason} at byte {e.start})") from None
    except (EOFError, gzip.BadGzipFile, OSError) as e:
        if isinstance(e, InputError):
            raise
        raise InputError(path, f"cannot read: {e}") from None


def read_json(path: str | Path, missing: str = "file not found") -> Any:
    """A whole JSON file; any fault names the file (`missing` says what a missing file means)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, missing)
    try:
        return json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as e:
        raise InputError(path, f"malformed JSON ({e.msg} at line {e.lineno})") from None
    except UnicodeDecodeError as e:
        raise InputError(path, f"not valid UTF-8 ({e.reason})") from None
    except RecursionError:
        raise InputError(path, "malformed JSON (nested too deeply)") from None


def read_table(path: str | Path, columns: list[str] | None = None, *, allow_empty: bool = False) -> pl.DataFrame:
    """Read JSONL(.gz) or Parquet into a DataFrame, checking that `columns` are present.
    An empty table is an error unless `allow_empty` (the caller then says what empty means)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file not found")
    name = path.name.lower()
    if name.endswith(".parquet"):
        try:
            df = pl.read_parquet(path)
        except Exception as e:  # polars raises several types for corrupt files
            raise InputError(path, f"not a readable Parquet file: {e}") from None
    elif name.endswith((".jsonl", ".jsonl.gz", ".json.gz", ".ndjson")):
        rows = [obj for _, obj in iter_jsonl(path)]
        df = pl.DataFrame(rows, infer_schema_length=None) if rows else pl.DataFrame()
    else:
        raise InputError(path, "unsupported file type (expected .jsonl, .jsonl.gz or .parquet)")
    if df.height == 0 and not allow_empty:
        raise InputError(path, "no records")
    missing = [c for c in columns or [] if c not in df.columns]
    if missing:
        raise InputError(path, f"missing column(s) {', '.join(missing)}; has: {', '.join(df.columns)}")
    return df
