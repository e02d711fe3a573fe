"""One reader for every record file the pipeline takes in: JSONL (plain or gzip) and Parquet.

`find_files` turns a path (a file or a directory) into the files to read; `iter_records` streams the
records of one file, each with a label that finds it: "line 12" counts lines from 1, as an editor
does; "row 40" counts rows from 0, as a data frame does (`pl.read_parquet(path).row(40)`).

A fault of one record (malformed JSON, not an object, invalid UTF-8, a lone surrogate escape, a
missing required key, an over-long line or Parquet row) comes back as a Record whose `fault` holds a
reason and a message, so a strict caller raises it (`Record.strict`: seed, eval inputs, training) and
a tolerant one keeps the record as rejected with its reason (corpus tables). A fault of the file
itself (missing, truncated gzip, unreadable Parquet, no records, a required column absent) raises
InputError naming the file and, where known, the record.

Memory stays bounded whatever the bytes: a JSONL line (of a plain or a gzip file, decompressed as it
is read) is read in pieces of at most READ_CHUNK and never held beyond its cap, so a decompression
bomb costs the cap, not its expansion; a whole JSON file is read only up to MAX_JSON_BYTES; a
Parquet row group whose rows are larger than the cap on average is not read at all.
"""

from __future__ import annotations

import codecs
import gzip
import json
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from humpback.errors import InputError

JSONL_SUFFIXES = (".jsonl", ".jsonl.gz", ".ndjson", ".ndjson.gz", ".json.gz")
PARQUET_SUFFIXES = (".parquet",)
TABLE_SUFFIXES = JSONL_SUFFIXES + PARQUET_SUFFIXES
MAX_LINE_BYTES = 16 << 20  # one JSONL line or Parquet row; a longer one is rejected, never held in memory whole
MAX_JSON_BYTES = 64 << 20  # a whole JSON file (AlpacaEval outputs, metrics); a larger one is an error, not read
READ_CHUNK = 1 << 20  # the most bytes read from a file at once
PARQUET_BATCH_ROWS = 4096

# Fault reasons; tolerant callers count rejected records under these names.
MALFORMED_JSON = "malformed_json"  # not JSON, nested too deeply, or not an object
UNDECODABLE = "undecodable"  # not UTF-8, or a lone surrogate escape
MISSING_FIELD = "missing_field"  # a required key is absent
LINE_TOO_LONG = "line_too_long"  # a JSONL line over the cap
TOO_LARGE = "too_large"  # a Parquet row over the cap


class Fault(NamedTuple):
    reason: str
    message: str  # says what is wrong; the file and the record label are added where it is reported


class Record(NamedTuple):
    path: Path
    label: str  # "line 12" / "row 40"
    number: int  # 12 / 40, for ids that name the record
    data: dict | None  # the object; None when it is not one or holds invalid text
    fault: Fault | None = None

    def strict(self) -> dict:
        """The record's object, or the InputError its fault means."""
        if self.fault is not None:
            raise InputError(self.path, self.fault.message, self.label)
        return self.data


def _expected(suffixes: Sequence[str]) -> str:
    return suffixes[0] if len(suffixes) == 1 else f"{', '.join(suffixes[:-1])} or {suffixes[-1]}"


def _has_suffix(path: Path, suffixes: Sequence[str]) -> bool:
    return path.name.lower().endswith(tuple(suffixes))


def is_parquet(path: str | Path) -> bool:
    return _has_suffix(Path(path), PARQUET_SUFFIXES)


def check_file(path: str | Path, suffixes: Sequence[str] = TABLE_SUFFIXES, missing: str = "file not found") -> Path:
    """`path` as a readable file of a supported type (`missing` says what a missing file means)."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, missing)
    if not path.is_file():
        raise InputError(path, "not a file")
    if not _has_suffix(path, suffixes):
        raise InputError(path, f"unsupported file type (expected {_expected(suffixes)})")
    return path


def path_text(path: str | Path) -> str:
    """A path as text that can be written as UTF-8: a file name's undecodable bytes (kept by Python
    as lone surrogates) become backslash escapes, so a document id made from it never crashes a write."""
    return str(path).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def find_files(path: str | Path, suffixes: Sequence[str] = TABLE_SUFFIXES) -> list[Path]:
    """The file `path` names, or every supported file under the directory `path`, sorted; hidden
    files and directories (".git", ".ipynb_checkpoints") are skipped."""
    path = Path(path)
    if not path.is_dir():
        return [check_file(path, suffixes)]
    files = sorted(
        p for p in path.rglob("*")
        if p.is_file() and _has_suffix(p, suffixes) and not any(s.startswith(".") for s in p.relative_to(path).parts)
    )
    if not files:
        raise InputError(path, f"directory has no {_expected(suffixes)} files")
    return files


def has_lone_surrogate(obj: Any) -> bool:
    """True when a decoded JSON value holds a lone surrogate ("\\ud800"): valid JSON, but not text
    that can be written as UTF-8 (Parquet, hashing), so it would crash a later step."""
    try:
        json.dumps(obj, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def object_fault(obj: Any, required: Sequence[str] = (), *, escapes: bool = True) -> Fault | None:
    """Why a decoded JSON value is not a usable record; None when it is one. `escapes` False says
    the source text has no "\\ud" escape, so the (costly) surrogate check can be skipped."""
    if not isinstance(obj, dict):
        return Fault(MALFORMED_JSON, f"expected a JSON object, got {type(obj).__name__}")
    if escapes and has_lone_surrogate(obj):
        return Fault(UNDECODABLE, "a string holds an unpaired UTF-16 surrogate escape (not valid text)")
    absent = [k for k in required if k not in obj]
    if absent:
        return Fault(MISSING_FIELD, f"missing key(s) {', '.join(absent)}; has: {', '.join(obj) or 'none'}")
    return None


def text_fault(value: Any, key: str) -> str | None:
    """Why a field that should hold text does not; None when it is a string."""
    if isinstance(value, str):
        return None
    return f"'{key}' must be a string, got {type(value).__name__}: {repr(value)[:60]}"


def iter_records(
    path: str | Path,
    required: Sequence[str] = (),
    optional: Sequence[str] | None = None,
    *,
    allow_empty: bool = False,
    max_line_bytes: int | None = None,
    hint: str = "",
) -> Iterator[Record]:
    """Stream the records of one JSONL(.gz) or Parquet file, in file order.

    Parquet reads the `required` columns and those of `optional` it has (all when None); JSONL
    records come whole. A required key absent from the first object, or a required column absent
    from the schema, is a source fault (the names are probably wrong; `hint` says what to set);
    absent from a later object, a per-record fault. No records at all is an InputError unless
    `allow_empty`. A JSONL line or a Parquet row (its text and binary cells) over `max_line_bytes`
    (default MAX_LINE_BYTES) is a per-record fault.
    """
    path = check_file(path)
    limit = max_line_bytes or MAX_LINE_BYTES
    if is_parquet(path):
        return _iter_parquet(path, required, optional, allow_empty, limit, hint)
    return _iter_jsonl(path, required, allow_empty, limit, hint)


def check_columns(path: Path, present: Sequence[str], required: Sequence[str], hint: str = "") -> None:
    absent = [c for c in required if c not in present]
    if absent:
        raise InputError(path, f"missing column(s) {', '.join(absent)}; has: {', '.join(present) or 'none'}"
                               + (f"; {hint}" if hint else ""))


def parquet_error(path: Path, e: Exception, label: str | None = None) -> InputError:
    return InputError(path, f"not a readable Parquet file ({type(e).__name__}: {e})", label)


def _iter_parquet(path: Path, required, optional, allow_empty: bool, limit: int, hint: str) -> Iterator[Record]:
    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as e:
        raise parquet_error(path, e) from None
    present = pf.schema_arrow.names
    check_columns(path, present, required, hint)
    meta = pf.metadata
    if meta.num_rows == 0 and not allow_empty:
        raise InputError(path, "no records")
    columns = None if optional is None else list(dict.fromkeys([*required, *(c for c in optional if c in present)]))
    read = set(present if columns is None else columns)
    row = 0
    try:
        for g in range(meta.num_row_groups):
            group = meta.row_group(g)
            # a row group holding more than `limit` bytes per row (uncompressed) has a row over the cap:
            # its pages are never decompressed, each of its rows is a fault (a cell bomb costs nothing)
            size = sum(group.column(c).total_uncompressed_size for c in range(group.num_columns)
                       if group.column(c).path_in_schema.split(".")[0] in read)
            if group.num_rows and size > (limit + 1024) * group.num_rows:
                fault = Fault(TOO_LARGE, f"row larger than {limit} bytes (its row group {g} holds {size} bytes "
                                         f"in {group.num_rows} row(s); not read)")
                for _ in range(group.num_rows):
                    yield Record(path, f"row {row}", row, None, fault)
                    row += 1
                continue
            for batch in pf.iter_batches(batch_size=PARQUET_BATCH_ROWS, row_groups=[g], columns=columns):
                sizes = _row_bytes(batch)
                if sizes is None or max(sizes) <= limit:
                    recs = iter(batch.to_pylist())
                else:  # convert only the rows within the cap
                    recs = iter(batch.filter(pa.array([n <= limit for n in sizes])).to_pylist())
                for i in range(batch.num_rows):
                    if sizes is not None and sizes[i] > limit:
                        yield Record(path, f"row {row}", row, None,
                                     Fault(TOO_LARGE, f"row larger than {limit} bytes ({sizes[i]} bytes of text)"))
                    else:
                        yield Record(path, f"row {row}", row, next(recs))
                    row += 1
    except (pa.ArrowException, OSError, ValueError) as e:  # ValueError: a string column that is not UTF-8
        raise parquet_error(path, e, f"row {row}") from None


def _row_bytes(batch: pa.RecordBatch) -> list[int] | None:
    """Bytes of the text and binary cells of each row (None when the batch has no such column)."""
    total = None
    for col in batch.columns:
        t = col.type
        if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_binary(t) or pa.types.is_large_binary(t):
            n = pc.fill_null(pc.binary_length(col), 0)
            total = n if total is None else pc.add(total, n)
    return None if total is None else total.to_pylist()


def read_lines(fh, limit: int) -> Iterator[bytes | None]:
    """The lines of a binary stream, each with its newline; None for a line longer than `limit` bytes
    (its newline not counted), which is read through in pieces of READ_CHUNK and never held whole.
    Peak memory is about `limit`, whatever the stream expands to (a gzip bomb of one endless line)."""
    while piece := fh.readline(min(limit + 1, READ_CHUNK)):
        parts, size = [piece], len(piece)
        while not piece.endswith(b"\n") and size <= limit:
            piece = fh.readline(min(limit + 1 - size, READ_CHUNK))
            if not piece:
                break
            parts.append(piece)
            size += len(piece)
        if size > limit and not piece.endswith(b"\n"):
            parts.clear()
            while piece and not piece.endswith(b"\n"):  # skip the rest of the line
                piece = fh.readline(READ_CHUNK)
            yield None
            continue
        yield parts[0] if len(parts) == 1 else b"".join(parts)


def read_at_most(stream, limit: int) -> bytes | None:
    """All of a binary stream if it holds at most `limit` bytes, else None after reading `limit` + 1
    of them in pieces of READ_CHUNK (a stream that decompresses as it is read costs the cap, not
    its expansion)."""
    parts, size = [], 0
    while size <= limit:
        piece = stream.read(min(limit + 1 - size, READ_CHUNK))
        if not piece:
            return parts[0] if len(parts) == 1 else b"".join(parts)
        parts.append(piece)
        size += len(piece)
    return None


def _iter_jsonl(path: Path, required, allow_empty: bool, max_line_bytes: int, hint: str) -> Iterator[Record]:
    # bytes, line by line with a size cap: a line is decoded on its own, so a bad one is that
    # record's fault, and a huge one (or a decompression bomb) is never read into memory whole
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    lineno = n_records = n_objects = 0
    try:
        with opener(path, "rb") as fh:
            for raw in read_lines(fh, max_line_bytes):
                lineno += 1
                label = f"line {lineno}"
                if raw is None:
                    n_records += 1
                    yield Record(path, label, lineno, None, Fault(LINE_TOO_LONG, f"line longer than {max_line_bytes} bytes"))
                    continue
                if lineno == 1 and raw.startswith(codecs.BOM_UTF8):  # left by an editor, not data
                    raw = raw[len(codecs.BOM_UTF8):]
                if not raw or raw.isspace():
                    continue
                n_records += 1
                obj, fault = _parse(raw)
                if fault is None:
                    fault = object_fault(obj, required, escapes=b"\\ud" in raw or b"\\uD" in raw)
                    if fault is not None and fault.reason == MISSING_FIELD and n_objects == 0:
                        raise InputError(path, fault.message + (f"; {hint}" if hint else ""), label)
                if isinstance(obj, dict):
                    n_objects += 1
                usable = fault is None or fault.reason == MISSING_FIELD  # its other fields can still name it
                yield Record(path, label, lineno, obj if usable else None, fault)
    except (OSError, EOFError, zlib.error) as e:  # truncated or corrupt gzip, a read error
        raise InputError(path, f"cannot read ({type(e).__name__}: {e})", f"line {lineno + 1}") from None
    if n_records == 0 and not allow_empty:
        raise InputError(path, "no records")


def _parse(raw: bytes) -> tuple[Any, Fault | None]:
    try:
        return json.loads(raw.decode("utf-8")), None
    except UnicodeDecodeError as e:  # bytes counted from 1, as JSON's columns
        return None, Fault(UNDECODABLE, f"not valid UTF-8 ({e.reason} at byte {e.start + 1} of the line)")
    except json.JSONDecodeError as e:
        return None, Fault(MALFORMED_JSON, f"malformed JSON ({e.msg} at column {e.colno})")
    except RecursionError:
        return None, Fault(MALFORMED_JSON, "malformed JSON (nested too deeply)")


def read_json(path: str | Path, missing: str = "file not found", max_bytes: int | None = None) -> Any:
    """A whole JSON file; any fault names the file (`missing` says what a missing file means). A file
    over `max_bytes` (default MAX_JSON_BYTES) is an error after reading at most that many bytes."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, missing)
    limit = max_bytes or MAX_JSON_BYTES
    too_large = InputError(path, f"larger than {limit} bytes (not read; split it or use JSONL)")
    try:
        if path.stat().st_size > limit:
            raise too_large
        with open(path, "rb") as fh:
            data = fh.read(limit + 1)
    except OSError as e:
        raise InputError(path, f"cannot read ({type(e).__name__}: {e.strerror or e})") from None
    if len(data) > limit:  # it grew while being read
        raise too_large
    try:
        return json.loads(data.decode("utf-8-sig"))
    except json.JSONDecodeError as e:
        raise InputError(path, f"malformed JSON ({e.msg} at line {e.lineno})") from None
    except UnicodeDecodeError as e:
        raise InputError(path, f"not valid UTF-8 ({e.reason} at byte {e.start + 1})") from None
    except RecursionError:
        raise InputError(path, "malformed JSON (nested too deeply)") from None


def read_table(
    path: str | Path, columns: list[str] | None = None, *, allow_empty: bool = False, missing: str = "file not found"
) -> pl.DataFrame:
    """Read JSONL(.gz) or Parquet into a DataFrame, checking that `columns` are present (`missing`
    says what a missing file means). An empty table is an error unless `allow_empty` (the caller
    then says what empty means). Faults are worded as in `humpback.readers`."""
    path = check_file(path, missing=missing)
    if is_parquet(path):
        try:
            df = pl.read_parquet(path)
        except Exception as e:  # polars raises several types for corrupt files
            raise parquet_error(path, e) from None
        check_columns(path, df.columns, columns or [])
    else:
        rows = [rec.strict() for rec in iter_records(path, columns or [], allow_empty=True)]
        df = pl.DataFrame(rows, infer_schema_length=None) if rows else pl.DataFrame()
    if df.height == 0 and not allow_empty:
        raise InputError(path, "no records")
    return df
