"""Document readers, one per source kind, each a generator in a deterministic order.

A reader yields `Document`s, `DocReject`s (a per-record fault: one undecodable page, one malformed
JSON line, one broken WARC record; kept with a reason) and `Skip`s (records that are not documents
at all: WARC requests and metadata, non-HTML responses). A fault of the source itself (missing
path, an empty directory or file, a truncated archive, a missing text column) raises InputError
naming the file and, where known, the record.
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Literal, NamedTuple

import pyarrow as pa
import pyarrow.parquet as pq

from humpback.corpus.config import SourceConfig
from humpback.corpus.decode import UndecodableError, decode_html
from humpback.corpus.packages import iter_packages
from humpback.errors import InputError
from humpback.io import has_lone_surrogate

Format = Literal["markdown", "rst", "html", "plain"]


class Document(NamedTuple):
    source: str
    doc_id: str
    url: str
    fmt: Format
    content: str
    headerless_ok: bool


class DocReject(NamedTuple):
    source: str
    doc_id: str
    url: str
    reason: str
    detail: str


class Skip(NamedTuple):
    source: str
    reason: str


Item = Document | DocReject | Skip

HTML_SUFFIXES = (".html", ".htm", ".xhtml")
WARC_SUFFIXES = (".warc", ".warc.gz")
TABLE_SUFFIXES = (".jsonl", ".jsonl.gz", ".ndjson", ".ndjson.gz", ".json.gz", ".parquet")


def iter_source(src: SourceConfig) -> Iterator[Item]:
    readers = {"packages": iter_packages, "html": iter_html, "warc": iter_warc, "table": iter_table}
    n = 0
    for item in readers[src.kind](src):
        yield item
        if not isinstance(item, Skip):
            n += 1
            if src.max_docs and n >= src.max_docs:
                return


def list_files(path: str, suffixes: tuple[str, ...], what: str) -> tuple[Path, list[Path]]:
    """The files under `path` (or `path` itself) whose name ends with one of `suffixes`, sorted."""
    if not path:
        raise InputError("params.yaml", f"corpus source of kind {what} needs a `path`")
    root = Path(path)
    if not root.exists():
        raise InputError(root, "does not exist")
    if root.is_file():
        if not root.name.lower().endswith(suffixes):
            raise InputError(root, f"unsupported file type for a {what} source (expected {', '.join(suffixes)})")
        return root.parent, [root]
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.name.lower().endswith(suffixes))
    if not files:
        raise InputError(root, f"directory has no {' / '.join(suffixes)} files")
    return root, files


# ---------------------------------------------------------------- a directory of HTML files

def iter_html(src: SourceConfig) -> Iterator[Item]:
    root, files = list_files(src.path, HTML_SUFFIXES, "html")
    for f in files:
        doc_id = f.relative_to(root).as_posix()
        try:
            data = f.read_bytes()
        except OSError as e:
            raise InputError(f, f"cannot read: {e.strerror or e}") from None
        try:
            text, _ = decode_html(data)
        except UndecodableError as e:
            yield DocReject(src.label, doc_id, "", "undecodable", str(e))
            continue
        yield Document(src.label, doc_id, "", "html", text, src.headerless_ok)


# ---------------------------------------------------------------- WARC (Common Crawl)

_HTML_TYPES = ("text/html", "application/xhtml+xml")


class _StrictReader:
    """A binary stream whose early end is an error (OSError), not an EOFError."""

    def __init__(self, fh):
        self.fh = fh

    def read(self, size: int = -1) -> bytes:
        try:
            return self.fh.read(size)
        except EOFError as e:
            raise OSError(f"file is truncated ({e})") from None


def iter_warc(src: SourceConfig) -> Iterator[Item]:
    from warcio.archiveiterator import ArchiveIterator  # imported here: only WARC sources need it
    from warcio.exceptions import ArchiveLoadFailed

    _, files = list_files(src.path, WARC_SUFFIXES, "warc")
    for f in files:
        n = 0
        any_record = False
        # gzip (not warcio's own decompressor) reads .gz, and its EOFError on a truncated file is
        # re-raised as an OSError: warcio takes an EOFError for the normal end of the archive
        opener = gzip.open if f.name.lower().endswith(".gz") else open
        with opener(f, "rb") as fh:
            try:
                for record in ArchiveIterator(_StrictReader(fh)):
                    n += 1
                    any_record = True
                    if record.rec_type != "response" or record.http_headers is None:
                        yield Skip(src.label, "non_response")
                        continue
                    ctype = record.http_headers.get_header("Content-Type") or ""
                    if ctype.split(";")[0].strip().lower() not in _HTML_TYPES:
                        yield Skip(src.label, "non_html")
                        continue
                    status = record.http_headers.get_statuscode() or ""
                    if not status.startswith("2"):
                        yield Skip(src.label, "http_status")
                        continue
                    uri = record.rec_headers.get_header("WARC-Target-URI") or ""
                    doc_id = record.rec_headers.get_header("WARC-Record-ID") or f"{f.name}#{n}"
                    try:
                        data = record.content_stream().read()
                    except Exception as e:  # broken chunking or content encoding of this one record
                        yield DocReject(src.label, doc_id, uri, "broken_record", f"record {n}: {type(e).__name__}: {e}")
                        continue
                    try:
                        text, _ = decode_html(data, ctype)
                    except UndecodableError as e:
                        yield DocReject(src.label, doc_id, uri, "undecodable", f"record {n}: {e}")
                        continue
                    yield Document(src.label, doc_id, uri, "html", text, src.headerless_ok)
            # warcio trips over malformed headers with plain Python errors (a record without a
            # WARC-Target-URI gives an AttributeError): all of them mean this archive is broken here
            except (ArchiveLoadFailed, OSError, EOFError, zlib.error, ValueError, AttributeError, TypeError,
                    IndexError, KeyError) as e:
                detail = " ".join(str(e).split())[:200]  # warcio quotes raw header lines, newlines included
                raise InputError(f, f"cannot read WARC ({type(e).__name__}: {detail})", f"{n + 1}") from None
        if not any_record:
            raise InputError(f, "no WARC records")


# ---------------------------------------------------------------- JSONL / Parquet text dumps

def iter_table(src: SourceConfig) -> Iterator[Item]:
    _, files = list_files(src.path, TABLE_SUFFIXES, "table")
    for f in files:
        yield from (_iter_parquet(src, f) if f.name.lower().endswith(".parquet") else _iter_jsonl(src, f))


def _iter_jsonl(src: SourceConfig, f: Path) -> Iterator[Item]:
    opener = gzip.open if f.name.lower().endswith(".gz") else open
    n_records = n_valid = 0
    lineno = 0
    try:
        with opener(f, "rb") as fh:
            for lineno, raw in enumerate(fh, start=1):
                if not raw.strip():
                    continue
                n_records += 1
                fallback_id = f"{f.name}:{lineno}"
                try:
                    obj = json.loads(raw.decode("utf-8-sig" if lineno == 1 else "utf-8"))  # a leading BOM is no data
                except UnicodeDecodeError as e:
                    yield DocReject(src.label, fallback_id, "", "undecodable",
                                    f"line {lineno}: not valid UTF-8 ({e.reason} at byte {e.start})")
                    continue
                except json.JSONDecodeError as e:
                    yield DocReject(src.label, fallback_id, "", "malformed_json", f"line {lineno}: {e.msg} at column {e.colno}")
                    continue
                except RecursionError:
                    yield DocReject(src.label, fallback_id, "", "malformed_json", f"line {lineno}: nested too deeply")
                    continue
                if b"\\ud" in raw.lower() and has_lone_surrogate(obj):
                    yield DocReject(src.label, fallback_id, "", "undecodable",
                                    f"line {lineno}: an unpaired UTF-16 surrogate escape (not valid text)")
                    continue
                if not isinstance(obj, dict):
                    yield DocReject(src.label, fallback_id, "", "malformed_json",
                                    f"line {lineno}: expected a JSON object, got {type(obj).__name__}")
                    continue
                doc_id = str(obj.get(src.id_column) or fallback_id)
                url = str(obj.get(src.url_column) or "")
                text = obj.get(src.text_column)
                if not isinstance(text, str):
                    if n_valid == 0 and src.text_column not in obj:  # the first record sets the schema
                        raise InputError(f, f"no '{src.text_column}' field (has: {', '.join(map(str, obj)) or 'none'}); "
                                            "set text_column", f"line {lineno}")
                    yield DocReject(src.label, doc_id, url, "missing_text", f"line {lineno}: no string '{src.text_column}'")
                    continue
                n_valid += 1
                yield Document(src.label, doc_id, url, "markdown", text, src.headerless_ok)
    except (OSError, EOFError, zlib.error) as e:
        raise InputError(f, f"cannot read ({type(e).__name__}: {e})", f"line {lineno + 1}") from None
    if n_records == 0:
        raise InputError(f, "no records")


def _iter_parquet(src: SourceConfig, f: Path) -> Iterator[Item]:
    try:
        pf = pq.ParquetFile(f)
    except (OSError, pa.ArrowException) as e:
        raise InputError(f, f"not a readable Parquet file ({e})") from None
    names = pf.schema_arrow.names
    if src.text_column not in names:
        raise InputError(f, f"no '{src.text_column}' column (has: {', '.join(names)}); set text_column")
    if pf.metadata.num_rows == 0:
        raise InputError(f, "no records")
    columns = [c for c in dict.fromkeys([src.text_column, src.id_column, src.url_column]) if c in names]
    row = 0
    try:
        for batch in pf.iter_batches(batch_size=4096, columns=columns):
            data = batch.to_pydict()
            texts = data[src.text_column]
            ids = data.get(src.id_column, [None] * len(texts))
            urls = data.get(src.url_column, [None] * len(texts))
            for text, doc_id, url in zip(texts, ids, urls, strict=True):
                row += 1
                doc_id = str(doc_id) if doc_id is not None else f"{f.name}:{row}"
                if not isinstance(text, str):
                    yield DocReject(src.label, doc_id, str(url or ""), "missing_text", f"row {row}: no string '{src.text_column}'")
                    continue
                yield Document(src.label, doc_id, str(url or ""), "markdown", text, src.headerless_ok)
    except (OSError, pa.ArrowException) as e:
        raise InputError(f, f"cannot read Parquet ({e})", f"row {row + 1}") from None
