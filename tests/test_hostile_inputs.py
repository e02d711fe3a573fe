"""Hostile and careless input bytes: decompression bombs, pages that lie about their charset or their
length, and text that is only invisible characters. Each case ends in a named one-line error
(InputError naming the file and the record) or a counted rejection with its reason; the other
records still come through, and memory stays bounded whatever a file expands to.

Bombs are built without ever holding their expansion: DEFLATE blocks of zeros cut at a full flush
are identical, so a 512 MiB expansion is one 32 KiB block repeated, wrapped as gzip or zlib by hand.
They are read in one child process that resets its peak RSS (/proc/self/clear_refs) before each case
and reports the case's peak above the RSS it started from.
"""

from __future__ import annotations

import functools
import gzip
import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import dvc_stage
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import reliability_plugin as ledger

from humpback.augment import DegenerateFilter, FilterConfig
from humpback.corpus.config import SourceConfig
from humpback.corpus.decode import UndecodableError, decode_html
from humpback.corpus.sources import iter_source
from humpback.errors import InputError
from humpback.evaluation.inputs import load_prompts
from humpback.seed import SeedConfig, SeedSource, build_seed
from humpback.text import has_visible

pytest_plugins = ["reliability_plugin"]

MB = 1 << 20
BLOCK = 32 * MB  # zeros per repeated DEFLATE block
BOMB = 512 * MB  # what a bomb expands to
PEAK_MB = 100  # the most a bomb may cost over the RSS before it (the caps are 16 MiB)


# --------------------------------------------------------------------------- bomb builders

@functools.cache
def _zero_block() -> tuple[bytes, bytes]:
    c = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    return c.compress(bytes(BLOCK)) + c.flush(zlib.Z_FULL_FLUSH), c.flush()


def deflate_zeros(n: int) -> bytes:
    """A raw DEFLATE stream of n zero bytes (n a multiple of BLOCK), about n / 1000 bytes long."""
    assert n % BLOCK == 0
    block, end = _zero_block()
    return block * (n // BLOCK) + end


@functools.cache
def _crc_zeros(n: int) -> int:
    crc, chunk = 0, bytes(MB)
    for _ in range(n // MB):
        crc = zlib.crc32(chunk, crc)
    return crc


def gzip_zeros(n: int) -> bytes:
    """One gzip member of n zeros."""
    return b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff" + deflate_zeros(n) + struct.pack("<II", _crc_zeros(n), n & 0xFFFFFFFF)


def zlib_zeros(n: int) -> bytes:
    """n zeros in the zlib format (HTTP's Content-Encoding: deflate); Adler-32 of zeros is n mod 65521 << 16 | 1."""
    return b"\x78\xda" + deflate_zeros(n) + struct.pack(">I", ((n % 65521) << 16) | 1)


def gz(*parts: bytes | int) -> bytes:
    """A multi-member gzip file: bytes are compressed as they are, an int is that many zeros."""
    return b"".join(gzip.compress(p) if isinstance(p, bytes) else gzip_zeros(p) for p in parts)


def test_the_bomb_builders_expand_as_claimed():
    for data, wbits in ((gzip_zeros(BLOCK), 31), (zlib_zeros(BLOCK), 15)):
        d = zlib.decompressobj(wbits)
        total = 0
        while chunk := d.decompress(data, 8 * MB):
            assert not chunk.strip(b"\0")
            total += len(chunk)
            data = d.unconsumed_tail
        assert total == BLOCK and d.eof and len(gzip_zeros(BOMB)) < BOMB // 900


# --------------------------------------------------------------------------- WARC builders

PAGE = ("<h2>Boiling eggs</h2><p>" + "Put the eggs in boiling water for nine minutes, then cool them. " * 8
        + "</p>").encode()


def warc_head(uri: str, length: int | str | None, rtype: str = "response") -> bytes:
    lines = [b"WARC/1.0", f"WARC-Type: {rtype}".encode(), f"WARC-Record-ID: <urn:uuid:{uri}>".encode(),
             f"WARC-Target-URI: http://{uri}.example/".encode(), b"WARC-Date: 2024-01-01T00:00:00Z",
             b"Content-Type: application/http; msgtype=response"]
    if length is not None:
        lines.append(f"Content-Length: {length}".encode())
    return b"\r\n".join(lines) + b"\r\n\r\n"


def http_head(ctype: str = "text/html", *extra: tuple[str, str], status: str = "200 OK") -> bytes:
    headers = [("Content-Type", ctype), *extra]
    return f"HTTP/1.1 {status}\r\n".encode() + "".join(f"{k}: {v}\r\n" for k, v in headers).encode() + b"\r\n"


def record(uri: str, payload: bytes = PAGE, http: bytes | None = None, length: int | str | None = ...) -> bytes:
    block = (http_head() if http is None else http) + payload
    return warc_head(uri, len(block) if length is ... else length) + block + b"\r\n\r\n"


def warc_gz(*records: bytes) -> bytes:
    return b"".join(gzip.compress(r) for r in records)


def write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return path


def sparse(path: Path, size: int, head: bytes = b"") -> Path:
    """A file of `size` bytes that takes no disk: `head`, then zeros (a hole)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.write(head)
        f.truncate(size)
    return path


def jsonl(*records) -> bytes:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records).encode()


PAIR = {"instruction": "How do I boil an egg?", "output": "Put it in boiling water for nine minutes."}
DOC = "# Eggs\n\n## Boiling eggs\n\n" + "Put the eggs in boiling water for nine minutes, then cool them. " * 8
TOAST = "## Toast\n\n" + "Toast the bread until it is golden, then butter it while it is warm. " * 8


def summary(items) -> list[tuple[str, str]]:
    return [(type(i).__name__, getattr(i, "reason", "")) for i in items]


# --------------------------------------------------------------------------- bombs, measured in a child process

CHILD = r'''
import gc, json, sys, time
from pathlib import Path
from humpback.corpus.config import SourceConfig
from humpback.corpus.sources import iter_source
from humpback.errors import HumpbackError
from humpback.evaluation.inputs import load_outputs, load_prompts
from humpback.seed import SeedConfig, SeedSource, build_seed

root = Path(sys.argv[1])

def status(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1]) / 1024

def trim():  # hand freed heap back first, so that the peak measures what the case itself holds
    try:
        import ctypes
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass

def reset():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # the peak RSS starts again from the current RSS
        return True
    except OSError:
        return False

def seed(path, kind="pairs"):
    return lambda: build_seed(SeedConfig(sources=[SeedSource(path=str(path), kind=kind)]))

def source(kind, path):
    def run():
        out = []
        for item in iter_source(SourceConfig(kind=kind, path=str(path))):
            out.append([type(item).__name__, getattr(item, "reason", ""), getattr(item, "detail", "")])
        return out
    return run

cases = [(name, (source(*args) if kind == "source" else seed(*args) if kind == "seed" else
                 (lambda p=args[0]: load_prompts(p)) if kind == "prompts" else (lambda p=args[0]: load_outputs(p))))
         for name, kind, args in json.loads(sys.argv[2])]
for name, fn in cases:  # once on the warm-up files: every module and buffer the readers use is loaded
    if name.startswith("warm"):
        fn()
for name, fn in cases:
    if name.startswith("warm"):
        continue
    gc.collect()
    trim()
    ok = reset()
    before = status("VmRSS:")
    start = time.perf_counter()
    try:
        result = fn()
        outcome = result if isinstance(result, list) else "no error"
    except HumpbackError as e:
        outcome = f"{type(e).__name__}: {e}"
    print(json.dumps({"case": name, "outcome": outcome, "peak_mb": round(status("VmHWM:") - before, 1),
                      "reset": ok, "seconds": round(time.perf_counter() - start, 2)}), flush=True)
'''


@pytest.fixture(scope="module")
def bombs(tmp_path_factory) -> dict:
    """Every bomb read by one child process: case -> (outcome, peak MB over the RSS before it)."""
    if not Path("/proc/self/status").is_file():
        pytest.skip("peak memory is read from /proc/self/status (Linux)")
    root = tmp_path_factory.mktemp("bombs")
    warm = root / "warm"
    write(warm / "p.jsonl", jsonl(PAIR))
    write(warm / "site" / "a.html", PAGE)
    write(warm / "a.warc.gz", warc_gz(record("w1"), record("w2", zlib.compress(PAGE), http_head(
        "text/html", ("Content-Encoding", "deflate")))))
    pq.write_table(pa.table({"id": ["a"], "text": [DOC]}), warm / "t.parquet")
    write(warm / "prompts.jsonl", jsonl({"instruction": "hi"}))
    cases = [("warm seed", "seed", [str(warm / "p.jsonl")]), ("warm html", "source", ["html", str(warm / "site")]),
             ("warm warc", "source", ["warc", str(warm / "a.warc.gz")]),
             ("warm table", "source", ["table", str(warm / "t.parquet")]),
             ("warm prompts", "prompts", [str(warm / "prompts.jsonl")])]

    def case(name, kind, *args):
        cases.append((name, kind, [str(a) for a in args]))

    # JSONL: one endless line, and lines over the cap between good ones
    case("seed jsonl.gz: one 512 MiB line", "seed",
         write(root / "seed.jsonl.gz", gz(jsonl(PAIR), b'{"instruction": "', BOMB, b'", "output": "x"}\n')))
    lines: list[bytes | int] = [jsonl({"id": "first", "text": DOC})]
    for i in range(8):
        lines += [b'{"id": "bomb%d", "text": "' % i, BOMB // 16, b'"}\n']
    lines.append(jsonl(*[{"id": f"after{i}", "text": DOC.replace("nine", f"{i} nine")} for i in range(3)]))
    case("corpus table jsonl.gz: 8 lines of 32 MiB, good lines after", "source", "table",
         write(root / "dump.jsonl.gz", gz(*lines)))
    case("eval prompts jsonl.gz: one 256 MiB line", "prompts",
         write(root / "prompts.jsonl.gz", gz(jsonl({"instruction": "hi"}), b'{"instruction": "', BOMB // 2)))
    case("oasst trees jsonl.gz: one 256 MiB line", "seed",
         write(root / "o.trees.jsonl.gz", gz(b'{"prompt": {"text": "', BOMB // 2, b'"}}\n')), "oasst")
    # WARC: HTTP payloads that decompress to 512 MiB, a WARC header line of 512 MiB, an HTTP header of 64 MiB
    case("WARC gzip payload bomb (Content-Encoding: gzip)", "source", "warc", write(root / "gzip.warc.gz", warc_gz(
        record("a"), record("bomb", gzip_zeros(BOMB), http_head("text/html", ("Content-Encoding", "gzip"))),
        record("b"))))
    case("WARC deflate payload bomb (Content-Encoding: deflate)", "source", "warc", write(root / "deflate.warc.gz",
         warc_gz(record("a"), record("bomb", zlib_zeros(BOMB), http_head("text/html", ("Content-Encoding", "deflate"))),
                 record("b"))))
    case("WARC gzip payload bomb, chunked transfer", "source", "warc", write(root / "chunked.warc.gz", warc_gz(
        record("a"), record("bomb", b"%x\r\n" % len(gzip_zeros(BOMB)) + gzip_zeros(BOMB) + b"\r\n0\r\n\r\n",
                            http_head("text/html", ("Content-Encoding", "gzip"), ("Transfer-Encoding", "chunked"))),
        record("b"))))
    big_http = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nX-Junk: "
    tail = b"\r\n\r\n" + PAGE
    case("WARC HTTP header line of 64 MiB", "source", "warc", write(root / "http.warc.gz", gz(
        record("a"), warc_head("big", len(big_http) + 64 * MB + len(tail)) + big_http, 64 * MB, tail + b"\r\n\r\n",
        record("b"))))
    case("WARC header line of 512 MiB", "source", "warc", write(root / "head.warc.gz", gz(
        record("a"), b"WARC/1.0\r\nWARC-Type: response\r\nX-Junk: ", BOMB, b"\r\n\r\n")))
    # plain files: a 1 GiB HTML page and a 1 GiB JSON file (sparse: no disk, nothing compressed)
    site = root / "site"
    write(site / "a.html", PAGE)
    sparse(site / "huge.html", 1 << 30, b"<html><body><p>")
    write(site / "z.html", PAGE.replace(b"eggs", b"ham"))
    case("HTML file of 1 GiB", "source", "html", site)
    case("reference outputs JSON of 1 GiB", "outputs", sparse(root / "ref.json", 1 << 30, b'[{"instruction": "'))
    # Parquet: a 64 MiB cell in its own row group between good ones
    rows = pa.table({"id": ["a", "bomb", "b"], "text": [DOC, "0" * (64 * MB), DOC.replace("nine", "ten")]})
    pq.write_table(rows, root / "cells.parquet", row_group_size=1, compression="zstd")
    del rows
    case("Parquet cell of 64 MiB (its own row group)", "source", "table", root / "cells.parquet")

    done = subprocess.run([sys.executable, "-c", CHILD, str(root), json.dumps(cases)], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    out = {}
    for line in done.stdout.splitlines():
        r = json.loads(line)
        out[r["case"]] = (r["outcome"], r["peak_mb"])
    assert len(out) == len([c for c in cases if not c[0].startswith("warm")])
    return out


def _bounded(bombs: dict, case: str):
    outcome, peak = bombs[case]
    assert peak < PEAK_MB, f"{case}: {peak} MB over the RSS before it"
    return outcome


def _error(outcome, *needles: str) -> str:
    assert isinstance(outcome, str) and outcome.startswith("InputError: "), outcome
    assert "\n" not in outcome and all(n in outcome for n in needles), outcome
    return outcome


def test_jsonl_bombs_are_named_errors_for_strict_readers(bombs):
    for case, name in [("seed jsonl.gz: one 512 MiB line", "seed.jsonl.gz"),
                       ("eval prompts jsonl.gz: one 256 MiB line", "prompts.jsonl.gz"),
                       ("oasst trees jsonl.gz: one 256 MiB line", "o.trees.jsonl.gz")]:
        line = 2 if "seed" in case or "prompts" in case else 1
        msg = _error(_bounded(bombs, case), name, f"record line {line}: line longer than 16777216 bytes")
        ledger.hostile("bombs", case, msg)


def test_a_jsonl_bomb_over_many_lines_keeps_the_good_lines(bombs):
    case = "corpus table jsonl.gz: 8 lines of 32 MiB, good lines after"
    items = _bounded(bombs, case)
    assert [(k, r) for k, r, _ in items] == [("Document", "")] + [("DocReject", "line_too_long")] * 8 \
        + [("Document", "")] * 3
    assert items[1][2] == "line 2: line longer than 16777216 bytes"
    ledger.hostile("bombs", case, "rejected: line_too_long 8; the 4 good documents kept")


@pytest.mark.parametrize("case,what", [
    ("WARC gzip payload bomb (Content-Encoding: gzip)", "decoded HTTP payload (Content-Encoding: gzip)"),
    ("WARC deflate payload bomb (Content-Encoding: deflate)", "decoded HTTP payload (Content-Encoding: deflate)"),
    ("WARC gzip payload bomb, chunked transfer", "decoded HTTP payload (Content-Encoding: gzip)"),
    ("WARC HTTP header line of 64 MiB", None),
])
def test_warc_payload_and_header_bombs_are_rejected_records(bombs, case, what):
    items = _bounded(bombs, case)
    assert [(k, r) for k, r, _ in items] == [("Document", ""), ("DocReject", "too_large"), ("Document", "")]
    want = f"{what} over corpus.max_record_bytes (16777216 bytes)" if what else "HTTP header block over 1048576 bytes"
    assert items[1][2] == f"record 2: {want}"
    ledger.hostile("bombs", case, f"rejected: too_large ({items[1][2]}); the pages around it kept")


def test_a_warc_header_bomb_is_a_named_error(bombs):
    case = "WARC header line of 512 MiB"
    msg = _error(_bounded(bombs, case), "head.warc.gz, record 2: cannot read WARC: a header block over 1048576 bytes")
    ledger.hostile("bombs", case, msg)


def test_huge_plain_files_are_never_read_whole(bombs):
    items = _bounded(bombs, "HTML file of 1 GiB")
    assert [(k, r) for k, r, _ in items] == [("Document", ""), ("DocReject", "too_large"), ("Document", "")]
    assert items[1][2] == "file of 1073741824 bytes, over corpus.max_record_bytes (16777216 bytes)"
    ledger.hostile("bombs", "HTML file of 1 GiB", "rejected: too_large (not opened); the other pages kept")
    msg = _error(_bounded(bombs, "reference outputs JSON of 1 GiB"), "ref.json: larger than 67108864 bytes")
    ledger.hostile("bombs", "reference outputs JSON of 1 GiB", msg)


def test_a_parquet_cell_bomb_is_not_decompressed(bombs):
    case = "Parquet cell of 64 MiB (its own row group)"
    items = _bounded(bombs, case)
    assert [(k, r) for k, r, _ in items] == [("Document", ""), ("DocReject", "too_large"), ("Document", "")]
    assert items[1][2].startswith("row 1: row larger than 16777216 bytes (its row group 1 holds ")
    ledger.hostile("bombs", case, "rejected: too_large (row group not read); the other rows kept")


def test_every_bomb_was_measured(bombs):
    # the peaks are of the case alone where the kernel lets the peak be reset (Linux >= 4.0), else upper bounds
    assert all(peak < PEAK_MB for _, peak in bombs.values()), bombs


def test_a_huge_parquet_cell_among_small_rows_is_rejected(tmp_path):
    # sharing a row group with small rows, the cell is read (its page holds it) and then rejected
    path = tmp_path / "mixed.parquet"
    texts = [DOC.replace("nine", str(i)) for i in range(9)]
    texts.insert(1, "x" * (3 * MB))
    pq.write_table(pa.table({"id": [f"d{i}" for i in range(10)], "text": texts}), path)
    items = list(iter_source(SourceConfig(kind="table", path=str(path)), max_bytes=MB))
    assert summary(items) == [("Document", ""), ("DocReject", "too_large")] + [("Document", "")] * 8
    assert items[1].detail == f"row 1: row larger than {MB} bytes ({3 * MB + 2} bytes of text)"
    with pytest.raises(InputError, match=r"mixed\.parquet, record row 1: row larger than"):
        build_seed(SeedConfig(sources=[SeedSource(path=str(path), instruction_column="id", output_column="text")],
                              max_record_bytes=MB))
    ledger.hostile("bombs", "Parquet cell over the cap among small rows",
                   "corpus: rejected too_large, the other rows kept; seed: InputError naming row 1")


# --------------------------------------------------------------------------- pages: charsets that are not text encodings

NOT_TEXT = ["base64", "zlib", "rot13", "hex", "bz2", "uu", "quopri"]
NOT_WEB = ["unicode_escape", "raw-unicode-escape", "idna", "punycode", "undefined"]
UNKNOWN = ["klingon", "x" * 300, "encodings.base64_codec", "("]
UTF8 = "<h2>Café au lait</h2><p>" + "Warm the milk, pour the coffee, stir well. " * 8 + "</p>"


def _declared(charset: str, where: str, body: bytes) -> tuple[bytes, str | None]:
    if where == "meta":
        return f'<meta charset="{charset}">'.encode() + body, None
    if where == "xml":
        return f'<?xml version="1.0" encoding="{charset}"?>'.encode() + body, None
    return body, f"text/html; charset={charset}"


@pytest.mark.parametrize("charset", NOT_TEXT + NOT_WEB + UNKNOWN)
def test_a_charset_that_is_no_text_encoding_is_no_label(charset):
    why = ("is not a text encoding" if charset in NOT_TEXT else "is not a web page encoding" if charset in NOT_WEB
           else "unknown charset")
    for where in ("http", "meta", "xml"):
        data, ctype = _declared(charset, where, UTF8.encode())
        text, codec = decode_html(data, ctype)  # UTF-8 bytes: read as UTF-8, as with no label
        assert codec == "utf-8" and "Café" in text
        data, ctype = _declared(charset, where, UTF8.encode("cp1252"))
        with pytest.raises(UndecodableError) as e:
            decode_html(data, ctype)
        msg = str(e.value)
        assert why in msg and repr(charset[:40])[:-1] in msg and "\n" not in msg, msg
    shown = "x" * 8 + "..." if len(charset) > 40 else charset
    ledger.hostile("pages", f"charset {shown!r} (HTTP header, meta, XML declaration)",
                   f"UTF-8 page read as UTF-8; otherwise rejected: undecodable ({why})")


def test_a_codec_that_leaves_a_lone_surrogate_is_not_used():
    # Python's UTF-7 decodes "+2AA-" to a lone surrogate, which no Parquet file can hold: the page is
    # read as UTF-8 instead (UTF-7 is ASCII, so it always is UTF-8)
    text, codec = decode_html(b"<p>+2AA- cafe</p>", "text/html; charset=utf-7")
    assert codec == "utf-8" and "+2AA-" in text
    ledger.hostile("pages", "charset utf-7 decoding to a lone surrogate", "read as UTF-8 (never a lone surrogate)")


def test_bad_charsets_in_a_warc_and_an_html_directory_never_stop_the_corpus(tmp_path):
    records = [record("good")]
    for i, cs in enumerate(NOT_TEXT + NOT_WEB + ["klingon"]):
        records.append(record(f"c{i}", UTF8.encode("cp1252"), http_head(f"text/html; charset={cs}")))
        records.append(record(f"u{i}", UTF8.replace("Café", f"Café {i}").encode(), http_head(f"text/html; charset={cs}")))
    items = list(iter_source(SourceConfig(kind="warc", path=str(write(tmp_path / "cs.warc.gz", warc_gz(*records))))))
    n = len(NOT_TEXT + NOT_WEB) + 1
    assert summary(items) == [("Document", "")] + [("DocReject", "undecodable"), ("Document", "")] * n
    site = tmp_path / "site"
    for i, cs in enumerate(NOT_TEXT):
        write(site / f"m{i}.html", f'<meta charset="{cs}">'.encode() + UTF8.encode("cp1252"))
        write(site / f"x{i}.xhtml", f'<?xml version="1.0" encoding="{cs}"?>'.encode() + UTF8.encode("cp1252"))
    write(site / "good.html", PAGE)
    items = list(iter_source(SourceConfig(kind="html", path=str(site))))
    assert sorted(summary(items)) == [("DocReject", "undecodable")] * 2 * len(NOT_TEXT) + [("Document", "")]
    ledger.hostile("pages", "every such charset in one WARC and one HTML directory",
                   "each page rejected: undecodable or read as UTF-8; the good page kept")


# --------------------------------------------------------------------------- pages: WARC records that lie about their length

LENGTHS = [
    ("Content-Length of 20 digits", "10000000000000000007", "record 2: cannot read WARC: Content-Length "
                                                            "'10000000000000000007' is not a byte count"),
    ("Content-Length of 25 digits", "1" + "0" * 24, "record 2: cannot read WARC: Content-Length '1000"),
    ("negative Content-Length", "-5", "record 2: cannot read WARC: Content-Length '-5' is not a byte count"),
    ("non-numeric Content-Length", "12ab", "record 2: cannot read WARC: Content-Length '12ab' is not a byte count"),
    ("no Content-Length", None, "record 2: cannot read WARC: no Content-Length header"),
    ("Content-Length past the end of the file", 10**9, "record 2: cannot read WARC: the file ends"),
    ("Content-Length too short", 40, "record 3: cannot read WARC (ArchiveLoadFailed: Invalid WARC record"),
]


@pytest.mark.parametrize("case,length,needle", LENGTHS, ids=[c[0] for c in LENGTHS])
@pytest.mark.parametrize("gzipped", [True, False], ids=["warc.gz", "warc"])
def test_a_warc_record_with_a_wrong_length_is_a_named_error(tmp_path, case, length, needle, gzipped):
    recs = [record("a"), record("liar", length=length), record("b")]
    name = "x.warc.gz" if gzipped else "x.warc"
    path = write(tmp_path / name, warc_gz(*recs) if gzipped else b"".join(recs))
    with pytest.raises(InputError) as e:
        list(iter_source(SourceConfig(kind="warc", path=str(path))))
    msg = str(e.value)
    assert msg.startswith(f"{path}, {needle}") and "\n" not in msg, msg
    if gzipped:
        ledger.hostile("pages", f"WARC: {case}", msg)


def test_a_truncated_last_record_is_a_named_error(tmp_path):
    data = record("a") + record("b")
    path = write(tmp_path / "cut.warc", data[:-200])
    with pytest.raises(InputError, match=r"cut\.warc, record 2: cannot read WARC: the file ends \d+ bytes before") as e:
        list(iter_source(SourceConfig(kind="warc", path=str(path))))
    ledger.hostile("pages", "WARC: last record truncated (uncompressed file)", str(e.value))


def test_malformed_headers_reject_or_skip_their_record_only(tmp_path):
    garbage = b"\x00\xff garbage status\r\nContent-Type: text/html\r\n\r\n"
    no_colon = b"HTTP/1.1 200 OK\r\nContent-Type text/html\r\n\r\n"
    odd_warc = record("w", PAGE.replace(b"eggs", b"jam")).replace(b"WARC-Date:", b"WARC-Date", 1)
    path = write(tmp_path / "h.warc.gz", warc_gz(record("a"), record("g", PAGE, garbage), record("n", PAGE, no_colon),
                                                   odd_warc, record("b", PAGE.replace(b"eggs", b"ham"))))
    items = list(iter_source(SourceConfig(kind="warc", path=str(path))))
    assert summary(items) == [("Document", ""), ("Skip", "http_status"), ("Skip", "non_html"), ("Document", ""),
                              ("Document", "")]
    ledger.hostile("pages", "WARC: garbage HTTP status line", "skipped: http_status; the other pages kept")
    ledger.hostile("pages", "WARC: HTTP header line without a colon", "skipped: non_html; the other pages kept")
    ledger.hostile("pages", "WARC: WARC header line without a colon", "the line is ignored, the page read")


# --------------------------------------------------------------------------- invisible text

INVISIBLE = ["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", *map(chr, range(0x202A, 0x202F)),
             *map(chr, range(0x2066, 0x206A)), "\u00ad", "\ufe0f", "\ufe00", "\U000e0100", "\u180e", "\u034f",
             "\u3164", "\u115f", "\u2800", "\u00a0", "\u3000", "\u2028", "\x00", "\x1b", "\u0301", "\U000e0041",
             "\ue000", " \t\r\n"]
VISIBLE = ["a", "é", "漢", "١", "😀", "\u093e", "-", "$", "\ufffd", "e\u0301"]


@pytest.mark.parametrize("kind, name, line", [
    ("pairs", "pairs.jsonl.gz", {"instruction": "Why?", "output": "x" * 5000}),
    ("oasst", "o.trees.jsonl", {"prompt": {"message_id": "p", "role": "prompter", "text": "y" * 5000, "lang": "en", "replies": [
        {"message_id": "r", "role": "assistant", "text": "Yes.", "lang": "en", "rank": 0}]}}),
])
def test_seed_max_record_bytes_bounds_every_seed_reader(tmp_path, kind, name, line):
    """The seed readers take their bound from params: a record over `seed.max_record_bytes` is an error
    naming it, and the same file reads under the default bound."""
    data = jsonl(line)
    path = write(tmp_path / name, gz(data) if name.endswith(".gz") else data)
    source = SeedSource(path=str(path), kind=kind)
    with pytest.raises(InputError, match=r"record line 1: line longer than 4096 bytes"):
        build_seed(SeedConfig(sources=[source], max_record_bytes=4096))
    assert build_seed(SeedConfig(sources=[source])).kept.height == 1
    ledger.hostile("bombs", f"seed {kind} record of 5 kB under seed.max_record_bytes 4096",
                   "InputError: record line 1: line longer than 4096 bytes")


def test_has_visible_is_the_one_rule():
    assert not has_visible("".join(INVISIBLE)) and not has_visible("")
    assert all(not has_visible(c * 3) for c in INVISIBLE)
    assert all(has_visible("\u200b" + c + "\u200b") for c in VISIBLE)
    ledger.hostile("invisible", "has_visible over zero-width, bidi, soft hyphen, variation selectors, fillers",
                   "all empty; letters, digits, marks, symbols visible")


def test_an_invisible_seed_pair_is_empty(tmp_path):
    zw = "\u200b\u200c\u200d\u2060\ufeff\u202e\u2066\u00ad\ufe0f"
    path = write(tmp_path / "pairs.jsonl", jsonl(PAIR, {"instruction": zw, "output": "An answer."},
                                                 {"instruction": "A question?", "output": zw + " \u202a\u202c"}))
    res = build_seed(SeedConfig(sources=[SeedSource(path=str(path))]))
    assert res.kept.height == 1 and res.metrics["rejected"] == {"empty_instruction": 1, "empty_output": 1}
    ledger.hostile("invisible", "seed pair of zero-width and bidi characters (JSONL)",
                   "rejected: empty_instruction 1, empty_output 1; the good pair kept")


def test_an_invisible_oasst_prompt_is_empty(tmp_path):
    msgs = [{"message_id": "p", "parent_id": None, "role": "prompter", "text": "\u200b\u2060", "lang": "en"},
            {"message_id": "r", "parent_id": "p", "role": "assistant", "text": "Hi.", "lang": "en", "rank": 0},
            {"message_id": "q", "parent_id": None, "role": "prompter", "text": "Hello?", "lang": "en"},
            {"message_id": "s", "parent_id": "q", "role": "assistant", "text": "Hi.", "lang": "en", "rank": 0}]
    path = write(tmp_path / "o.messages.jsonl", jsonl(*msgs))
    res = build_seed(SeedConfig(sources=[SeedSource(path=str(path), kind="oasst")]))
    assert res.kept.height == 1 and res.metrics["rejected"] == {"empty_instruction": 1}
    ledger.hostile("invisible", "oasst prompt of zero-width characters", "rejected: empty_instruction")


def test_an_invisible_corpus_page_is_an_empty_document(tmp_path):
    from humpback.corpus import CorpusConfig, prepare_corpus

    zw = "\u200b\u200d\u2060\ufeff\u202e\u2067\u00ad" * 80
    site = tmp_path / "site"
    write(site / "zw.html", f"<h2>{zw}</h2><p>{zw}</p><p>\u3164\u2800</p>")
    write(site / "good.html", PAGE)
    write(tmp_path / "dump.jsonl", jsonl({"id": "zw", "text": f"{zw}\n\n{zw}"}, {"id": "ok", "text": TOAST}))
    cfg = CorpusConfig(sources=[SourceConfig(kind="html", path=str(site)),
                                SourceConfig(kind="table", path=str(tmp_path / "dump.jsonl"))],
                       min_chars=100, min_alpha_share=0)  # no other filter would catch it
    m = prepare_corpus(cfg, tmp_path / "s.parquet", tmp_path / "r.parquet")
    rej = pl.read_parquet(tmp_path / "r.parquet").filter(reason="empty_document")
    assert sorted(rej["doc_id"]) == ["zw", "zw.html"] and set(rej["detail"]) == {"no visible text"}
    assert m["docs_kept"] == 2 and m["docs_in"] == 4
    ledger.hostile("invisible", "corpus page of zero-width and bidi characters (HTML, table)",
                   "rejected: empty_document (no visible text); the good pages kept")


def test_an_invisible_eval_prompt_is_a_named_error(tmp_path):
    path = write(tmp_path / "prompts.jsonl", jsonl({"id": 1, "instruction": "Hi?"}, {"id": 2, "instruction": "\u200b\u202e\ufe0f"}))
    with pytest.raises(InputError) as e:
        load_prompts(path)
    assert str(e.value) == f"{path}, record line 2: empty 'instruction' (no visible character)"
    ledger.hostile("invisible", "eval prompt of zero-width and bidi characters", str(e.value))


def test_an_invisible_generated_instruction_is_empty():
    f = DegenerateFilter(FilterConfig())
    assert f.reason("\u200b" * 30, "Some web text.") == "empty"
    assert f.reason("\u2066\u2069\u200d\u00ad" * 10, "Some web text.") == "empty"
    assert f.reason("How do I boil an egg?\u200b", "Put the eggs in water.") is None
    ledger.hostile("invisible", "generated instruction of zero-width characters (augment filter)", "rejected: empty")


# --------------------------------------------------------------------------- the corpus stage, end to end

def test_the_corpus_stage_keeps_the_good_page_and_counts_the_rest(tmp_path):
    site = tmp_path / "raw" / "site"
    write(site / "good.html", PAGE)
    write(site / os.fsdecode(b"caf\xe9.html"), PAGE.replace(b"eggs", b"tea"))  # a name that is not UTF-8
    write(site / "base64.html", b'<meta charset="base64">' + UTF8.encode("cp1252"))
    sparse(site / "bomb.html", 1 << 30, b"<html><p>")
    write(tmp_path / "raw" / "crawl.warc.gz", warc_gz(
        record("bomb", gzip_zeros(8 * BLOCK), http_head("text/html", ("Content-Encoding", "gzip"))),
        record("b64", UTF8.encode("cp1252"), http_head("text/html; charset=base64")),
        record("good", PAGE.replace(b"eggs", b"ham"))))
    write(tmp_path / "raw" / "dump.jsonl.gz", gz(b'{"id": "bomb", "text": "', 8 * BLOCK, b'"}\n',
                                                 jsonl({"id": "good", "text": TOAST})))
    (tmp_path / "params.yaml").write_text(
        "corpus:\n  sources:\n    - {kind: html, path: raw/site}\n    - {kind: warc, path: raw/crawl.warc.gz}\n"
        "    - {kind: table, path: raw/dump.jsonl.gz}\n  min_chars: 200\n  near_dedup: false\n")
    done = dvc_stage.run_subprocess("corpus", None, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr
    m = json.loads((tmp_path / "metrics/corpus.json").read_text())
    assert m["rejected"] == {"line_too_long": 1, "too_large": 2, "undecodable": 2}
    assert (m["docs_in"], m["docs_rejected"], m["docs_kept"]) == (9, 5, 4)
    kept = pl.read_parquet(tmp_path / "data/prepared/segments.parquet")
    assert sorted(set(kept["doc_id"])) == sorted(["good.html", "caf\\xe9.html", "<urn:uuid:good>", "good"])
    rej = pl.read_parquet(tmp_path / "data/prepared/rejected.parquet")
    details = dict(rej.select("doc_id", "detail").iter_rows())
    assert details["bomb.html"].startswith("file of 1073741824 bytes, over corpus.max_record_bytes")
    assert "charset 'base64' is not a text encoding" in details["base64.html"]
    assert details["<urn:uuid:bomb>"].startswith("record 1: decoded HTTP payload (Content-Encoding: gzip) over")
    assert "charset 'base64' is not a text encoding" in details["<urn:uuid:b64>"]
    assert details["dump.jsonl.gz:1"] == "line 1: line longer than 16777216 bytes"
    ledger.hostile("bombs", "corpus stage end to end: HTML, WARC and table bombs, base64 charsets, good pages",
                   "exit 0; rejected: too_large 2, line_too_long 1, undecodable 2; the 4 good pages kept "
                   "(one under a file name that is not UTF-8, as caf\\xe9.html)")
