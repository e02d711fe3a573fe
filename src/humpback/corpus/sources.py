"""Document readers, one per source kind, each a generator in a deterministic order.

A reader yields `Document`s, `DocReject`s (a per-record fault: one undecodable page, one malformed
JSON line, one broken WARC record; kept with a reason) and `Skip`s (records that are not documents
at all: WARC requests and metadata, non-HTML responses). A fault of the source itself (missing
path, an empty directory or file, a truncated archive, a missing text column) raises InputError
naming the file and, where known, the record.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Literal, NamedTuple

from humpback.corpus.config import SourceConfig
from humpback.corpus.decode import UndecodableError, decode_html
from humpback.corpus.packages import iter_packages
from humpback.errors import InputError
from humpback.readers import MISSING_FIELD, TABLE_SUFFIXES, find_files, iter_records, text_fault

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
    """The directory document ids are relative to, and the files `path` names (readers.find_files)."""
    if not path:
        raise InputError("params.yaml", f"corpus source of kind {what} needs a `path`")
    root = Path(path)
    return (root if root.is_dir() else root.parent), find_files(root, suffixes)


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
    """Documents of JSONL/Parquet dumps; a record the shared reader faults is a DocReject with its reason."""
    _, files = list_files(src.path, TABLE_SUFFIXES, "table")
    columns = [src.text_column, src.id_column, src.url_column]
    for f in files:
        for rec in iter_records(f, [src.text_column], columns, hint="set text_column"):
            obj = rec.data or {}
            raw_id = obj.get(src.id_column)
            doc_id = f"{f.name}:{rec.number}" if raw_id is None or raw_id == "" else str(raw_id)
            url = str(obj.get(src.url_column) or "")
            if rec.fault is not None:
                reason = "missing_text" if rec.fault.reason == MISSING_FIELD else rec.fault.reason
                yield DocReject(src.label, doc_id, url, reason, f"{rec.label}: {rec.fault.message}")
                continue
            text = obj[src.text_column]
            if (bad := text_fault(text, src.text_column)) is not None:
                yield DocReject(src.label, doc_id, url, "missing_text", f"{rec.label}: {bad}")
                continue
            yield Document(src.label, doc_id, url, "markdown", text, src.headerless_ok)
