"""Document readers, one per source kind, each a generator in a deterministic order.

A reader yields `Document`s, `DocReject`s (a per-record fault: one undecodable page, one malformed
JSON line, one broken WARC record, one record over `corpus.max_record_bytes`; kept with a reason)
and `Skip`s (records that are not documents at all: WARC requests and metadata, non-HTML
responses). A fault of the source itself (missing path, an empty directory or file, a truncated
archive, a missing text column, a WARC record whose length cannot be trusted, so that the records
after it cannot be found) raises InputError naming the file and, where known, the record.

No record is read whole beyond `max_bytes` (`corpus.max_record_bytes`): an HTML file, a WARC
record's block, its HTTP payload as decoded (gzip or deflate Content-Encoding, chunked transfer), a
table line or row; a WARC or HTTP header block, beyond MAX_HEADER_BYTES (1 MiB) or `max_bytes`. A larger one is rejected (`too_large`; a JSONL line: the shared
reader's `line_too_long`) after reading at most that many bytes, so a decompression bomb costs the
cap, not its expansion; the rest of a WARC record is read through in pieces.
"""

from __future__ import annotations

import gzip
import itertools
import re
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Literal, NamedTuple

from humpback.corpus.config import CorpusConfig, SourceConfig
from humpback.corpus.decode import UndecodableError, decode_html
from humpback.corpus.packages import iter_packages
from humpback.errors import InputError
from humpback.readers import (
    MISSING_FIELD,
    READ_CHUNK,
    TABLE_SUFFIXES,
    find_files,
    iter_records,
    path_text,
    read_at_most,
    text_fault,
)

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


DEFAULT_MAX_BYTES: int = CorpusConfig.max_record_bytes


def iter_source(src: SourceConfig, max_bytes: int | None = None) -> Iterator[Item]:
    """The items of one source; no record over `max_bytes` is read whole (`corpus.max_record_bytes`;
    None: its default, and for table lines the shared reader's MAX_LINE_BYTES, of the same size)."""
    readers = {"html": iter_html, "warc": iter_warc, "table": iter_table}
    n = 0
    # the packages source reads the installed distributions' own metadata, not downloaded bytes
    items = iter_packages(src) if src.kind == "packages" else readers[src.kind](src, max_bytes)
    for item in items:
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

def _over(what: str, size: int | None, max_bytes: int) -> str:
    """The detail of a too_large rejection (`size` None: it was not read to its end)."""
    return f"{what} {f'of {size} bytes, ' if size is not None else ''}over corpus.max_record_bytes ({max_bytes} bytes)"


def iter_html(src: SourceConfig, max_bytes: int | None = None) -> Iterator[Item]:
    max_bytes = max_bytes or DEFAULT_MAX_BYTES
    root, files = list_files(src.path, HTML_SUFFIXES, "html")
    for f in files:
        doc_id = path_text(f.relative_to(root).as_posix())
        try:
            size = f.stat().st_size
            data = None
            if size <= max_bytes:  # a larger file is never opened; one that grows is read up to the cap
                with open(f, "rb") as fh:
                    data = read_at_most(fh, max_bytes)
        except OSError as e:
            raise InputError(f, f"cannot read: {e.strerror or e}") from None
        if data is None:
            yield DocReject(src.label, doc_id, "", "too_large", _over("file", size, max_bytes))
            continue
        try:
            text, _ = decode_html(data)
        except UndecodableError as e:
            yield DocReject(src.label, doc_id, "", "undecodable", str(e))
            continue
        yield Document(src.label, doc_id, "", "html", text, src.headerless_ok)


# ---------------------------------------------------------------- WARC (Common Crawl)

_HTML_TYPES = ("text/html", "application/xhtml+xml")
MAX_HEADER_BYTES = 1 << 20  # a WARC or HTTP header block (real ones hold a few KB; warcio's line reads are quadratic)
_HEADER_SLACK = 1 << 16  # read-ahead of warcio's buffers beyond the headers themselves
_LENGTH = re.compile(r"\d{1,18}")  # a byte count that fits a file offset


class _HeadersTooLarge(OSError):
    pass


class _StrictReader:
    """A binary stream whose early end is an error (OSError), not an EOFError; while armed, it gives
    at most `budget` bytes (the WARC headers of one record: warcio reads them whole, line by line)."""

    def __init__(self, fh):
        self.fh = fh
        self.left: int | None = None

    def arm(self, budget: int | None) -> None:
        self.left = budget

    def read(self, size: int | None = -1) -> bytes:
        if self.left is not None:
            if self.left <= 0:
                raise _HeadersTooLarge("WARC headers over the budget")
            size = self.left if size is None or size < 0 else min(size, self.left)
        try:
            data = self.fh.read(size)
        except EOFError as e:
            raise OSError(f"file is truncated ({e})") from None
        if self.left is not None:
            self.left -= len(data)
        return data


class _BadLength(ValueError):
    pass


def _block_length(record) -> int:
    """The record's declared block length; a missing, negative, non-numeric or absurd one is a fault
    of the archive: the next record starts where it says, so nothing after it can be found."""
    value = record.rec_headers.get_header("Content-Length") if record.format == "warc" else str(record.length)
    if value is None:
        raise _BadLength("no Content-Length header")
    if not _LENGTH.fullmatch(value.strip()):
        shown = value.strip()[:40] + ("..." if len(value.strip()) > 40 else "")
        raise _BadLength(f"Content-Length {shown!r} is not a byte count")
    return int(value)


def _drain(record) -> None:
    """Read the rest of a record's block in pieces; a block that ends early is a truncated archive."""
    stream = record.raw_stream
    while stream.read(READ_CHUNK):
        pass
    missing = getattr(stream, "limit", 0)
    if missing > 0:
        raise _BadLength(f"the file ends {missing} bytes before the end of the record its Content-Length "
                         "declares (truncated, or a wrong Content-Length)")


# ---- the HTTP payload, de-chunked and decompressed as it is read (warcio decompresses a whole
# chunk at once: a chunk of a few hundred KB of gzip would be held as GBs)

_INFLATE = {"gzip": (31,), "x-gzip": (31,), "deflate": (15, -15)}  # zlib window bits to try, in order


def _pieces(raw) -> Iterator[bytes]:
    while piece := raw.read(READ_CHUNK):
        yield piece


def _dechunk(raw) -> Iterator[bytes]:
    """The data of a chunked transfer, as browsers take it: a body that is not chunked after all is
    taken as it is, a body cut off ends where it ends."""
    first = True
    while True:
        line = raw.readline(64)
        try:
            if not line.endswith(b"\n"):
                raise ValueError
            size = int(line.strip().split(b";")[0], 16)
            if size < 0:
                raise ValueError
        except ValueError:
            if not first:
                raise ValueError(f"malformed chunk size line {line[:20]!r}") from None
            yield line  # not chunked: the whole body as it is
            yield from _pieces(raw)
            return
        first = False
        if size == 0:
            return
        while size:
            piece = raw.read(min(size, READ_CHUNK))
            if not piece:
                return
            size -= len(piece)
            yield piece
        end = raw.read(2)
        if end != b"\r\n":  # chunked no further: the rest as it is
            yield end
            yield from _pieces(raw)
            return


def _inflate(pieces: Iterator[bytes], wbits: tuple[int, ...]) -> Iterator[bytes]:
    """Decompressed data, at most READ_CHUNK bytes per step whatever the ratio. A body that does not
    start as the declared format is taken as it is (a common lie); one that breaks later is a fault."""
    first = next(pieces, b"")
    for w in wbits:
        try:
            zlib.decompressobj(w).decompress(first, 1)
            break
        except zlib.error:
            continue
    else:
        yield first
        yield from pieces
        return
    d = zlib.decompressobj(w)
    for data in itertools.chain([first], pieces):
        while data and not d.eof:
            out = d.decompress(data, READ_CHUNK)
            data = d.unconsumed_tail
            if out:
                yield out
        if d.eof:
            return
    if tail := d.flush():
        yield tail


def read_payload(raw, http_headers, max_bytes: int) -> bytes | None:
    """The page an HTTP response carries (chunked transfer and gzip/deflate content encoding undone);
    None when it is over `max_bytes` decoded, after decoding at most that much of it."""
    chunked = "chunked" in (http_headers.get_header("Transfer-Encoding") or "").lower()
    pieces = _dechunk(raw) if chunked else _pieces(raw)
    encoding = (http_headers.get_header("Content-Encoding") or "").strip().lower()
    if encoding in _INFLATE:  # others (identity, br, compress) are taken as they are, as warcio does
        pieces = _inflate(pieces, _INFLATE[encoding])
    parts, size = [], 0
    for piece in pieces:
        size += len(piece)
        if size > max_bytes:
            return None
        parts.append(piece)
    return b"".join(parts)


def _one_line(e: Exception) -> str:
    return " ".join(f"{type(e).__name__}: {e}".split())[:200]  # warcio quotes raw header lines, newlines included


def _warc_item(src: SourceConfig, f: Path, n: int, record, length: int, loader, max_bytes: int) -> Item:
    """What one WARC record is: a page, a rejected page with its reason, or not a page at all."""
    from warcio.limitreader import LimitReader

    if record.rec_type != "response":
        return Skip(src.label, "non_response")
    uri = record.rec_headers.get_header("WARC-Target-URI") or ""
    doc_id = record.rec_headers.get_header("WARC-Record-ID") or f"{path_text(f.name)}#{n}"
    # the HTTP headers, from at most MAX_HEADER_BYTES of the block (warcio would read them whole)
    cap = min(max_bytes, MAX_HEADER_BYTES)
    head = LimitReader(record.raw_stream, min(length, cap))
    try:
        record.http_headers = loader.load_http_headers(record.rec_type, uri, head, length)
    except Exception as e:  # a malformed status line or header block: this record only, its length is known
        return DocReject(src.label, doc_id, uri, "broken_record", f"record {n}: HTTP headers: {_one_line(e)}")
    if length > cap and head.limit == 0:
        return DocReject(src.label, doc_id, uri, "too_large", f"record {n}: HTTP header block over {cap} bytes")
    if record.http_headers is None:
        return Skip(src.label, "non_response")
    ctype = record.http_headers.get_header("Content-Type") or ""
    if ctype.split(";")[0].strip().lower() not in _HTML_TYPES:
        return Skip(src.label, "non_html")
    status = record.http_headers.get_statuscode() or ""
    if not status.startswith("2"):
        return Skip(src.label, "http_status")
    if length > max_bytes:
        return DocReject(src.label, doc_id, uri, "too_large", f"record {n}: " + _over("WARC record", length, max_bytes))
    try:
        data = read_payload(record.raw_stream, record.http_headers, max_bytes)
    except Exception as e:  # broken chunking or content encoding of this one record
        return DocReject(src.label, doc_id, uri, "broken_record", f"record {n}: {_one_line(e)}")
    if data is None:
        encoding = record.http_headers.get_header("Content-Encoding") or "none"
        return DocReject(src.label, doc_id, uri, "too_large",
                         f"record {n}: " + _over(f"decoded HTTP payload (Content-Encoding: {encoding[:40]})", None, max_bytes))
    try:
        text, _ = decode_html(data, ctype)
    except UndecodableError as e:
        return DocReject(src.label, doc_id, uri, "undecodable", f"record {n}: {e}")
    return Document(src.label, doc_id, uri, "html", text, src.headerless_ok)


def iter_warc(src: SourceConfig, max_bytes: int | None = None) -> Iterator[Item]:
    from warcio.archiveiterator import ArchiveIterator  # imported here: only WARC sources need it
    from warcio.exceptions import ArchiveLoadFailed
    from warcio.recordloader import ArcWarcRecordLoader

    max_bytes = max_bytes or DEFAULT_MAX_BYTES
    loader = ArcWarcRecordLoader(verify_http=False)  # as ArchiveIterator's own
    header_cap = min(max_bytes, MAX_HEADER_BYTES)
    budget = header_cap + _HEADER_SLACK
    _, files = list_files(src.path, WARC_SUFFIXES, "warc")
    for f in files:
        n = 0
        at = 1  # the record a fault belongs to: the next one while warcio reads its headers
        # gzip (not warcio's own decompressor) reads .gz, and its EOFError on a truncated file is
        # re-raised as an OSError: warcio takes an EOFError for the normal end of the archive
        opener = gzip.open if f.name.lower().endswith(".gz") else open
        with opener(f, "rb") as fh:
            reader = _StrictReader(fh)
            reader.arm(budget)
            try:
                # warcio parses only the WARC headers (within the budget); the HTTP headers and the
                # payload are read here, bounded, once the record's length is known to be sound
                for record in ArchiveIterator(reader, no_record_parse=True):
                    reader.arm(None)
                    n = at
                    length = _block_length(record)
                    item = _warc_item(src, f, n, record, length, loader, max_bytes)
                    _drain(record)
                    yield item
                    at = n + 1
                    reader.arm(budget)
            except _BadLength as e:
                raise InputError(f, f"cannot read WARC: {e}; the records after it cannot be found", f"{at}") from None
            except _HeadersTooLarge:
                raise InputError(f, f"cannot read WARC: a header block over {header_cap} bytes", f"{at}") from None
            # warcio trips over malformed headers with plain Python errors (a record without a
            # WARC-Target-URI gives an AttributeError): all of them mean this archive is broken here
            except (ArchiveLoadFailed, OSError, EOFError, zlib.error, ValueError, AttributeError, TypeError,
                    IndexError, KeyError, OverflowError) as e:
                hint = f"; is the Content-Length of record {at - 1} right?" if isinstance(e, ArchiveLoadFailed) and at > 1 else ""
                raise InputError(f, f"cannot read WARC ({_one_line(e)}){hint}", f"{at}") from None
        if n == 0:
            raise InputError(f, "no WARC records")


# ---------------------------------------------------------------- JSONL / Parquet text dumps

def iter_table(src: SourceConfig, max_bytes: int | None = None) -> Iterator[Item]:
    """Documents of JSONL/Parquet dumps; a record the shared reader faults is a DocReject with its reason."""
    _, files = list_files(src.path, TABLE_SUFFIXES, "table")
    columns = [src.text_column, src.id_column, src.url_column]
    for f in files:
        for rec in iter_records(f, [src.text_column], columns, max_line_bytes=max_bytes, hint="set text_column"):
            obj = rec.data or {}
            raw_id = obj.get(src.id_column)
            doc_id = f"{path_text(f.name)}:{rec.number}" if raw_id is None or raw_id == "" else str(raw_id)
            url = str(obj.get(src.url_column) or "")
            if rec.fault is not None:
                # the reader's reason (line_too_long, too_large for a Parquet row, ...), as strict callers word it
                reason = "missing_text" if rec.fault.reason == MISSING_FIELD else rec.fault.reason
                yield DocReject(src.label, doc_id, url, reason, f"{rec.label}: {rec.fault.message}")
                continue
            text = obj[src.text_column]
            if (bad := text_fault(text, src.text_column)) is not None:
                yield DocReject(src.label, doc_id, url, "missing_text", f"{rec.label}: {bad}")
                continue
            yield Document(src.label, doc_id, url, "markdown", text, src.headerless_ok)
