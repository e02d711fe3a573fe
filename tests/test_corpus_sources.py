"""Document readers: HTML directories, WARC files, JSONL/Parquet dumps, and their faults (packages: test_corpus_packages.py)."""

from __future__ import annotations

import gzip
import json
from io import BytesIO

import polars as pl
import pytest
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from humpback.corpus.config import SourceConfig
from humpback.corpus.decode import UndecodableError, decode_html
from humpback.corpus.sources import DocReject, Document, Skip, iter_source
from humpback.errors import InputError


def items(kind: str, path, **kw):
    return list(iter_source(SourceConfig(kind=kind, path=str(path), **kw)))


# ---------------------------------------------------------------- HTML directory

def test_html_directory_recursive_with_charsets(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.html").write_text("<h1>A</h1><p>text a</p>", encoding="utf-8")
    (tmp_path / "sub" / "b.htm").write_bytes("<meta charset='iso-8859-1'><h1>Caf\u00e9</h1>".encode("latin-1"))
    (tmp_path / "sub" / "c.html").write_bytes(b"<h1>broken \xe9 page</h1>")  # latin-1 bytes, nothing declared
    (tmp_path / "notes.txt").write_text("ignored")
    got = items("html", tmp_path)
    assert [d.doc_id for d in got] == ["a.html", "sub/b.htm", "sub/c.html"]
    assert isinstance(got[1], Document) and "Caf\u00e9" in got[1].content
    assert isinstance(got[2], DocReject) and got[2].reason == "undecodable" and "utf-8" in got[2].detail


def test_decode_html_order_of_charset_sources():
    page = "<meta charset=\"windows-1251\"><p>\u041f\u0440\u0438\u0432\u0435\u0442</p>".encode("cp1251")
    assert decode_html(page)[1] == "cp1251"
    assert decode_html("caf\u00e9".encode("cp1252"), "text/html; charset=ISO-8859-1") == ("caf\u00e9", "cp1252")
    # a page labelled latin-1 that is really UTF-8 still decodes (cp1252 first, it fits), a UTF-8 BOM wins
    assert decode_html(b"\xef\xbb\xbf<p>x</p>", "text/html; charset=cp1251")[1] == "utf-8"
    assert decode_html("caf\u00e9".encode(), "text/html; charset=bogus-charset")[0] == "caf\u00e9"
    with pytest.raises(UndecodableError, match="unknown charset 'bogus-charset'"):
        decode_html(b"caf\xe9", "text/html; charset=bogus-charset")


# ---------------------------------------------------------------- WARC

def _record(writer, uri, body, ctype, rtype="response", status="200 OK"):
    if rtype == "response":
        http = StatusAndHeaders(status, [("Content-Type", ctype)], protocol="HTTP/1.1")
    else:
        http = StatusAndHeaders("GET / HTTP/1.1", [("Host", "example.org")], is_http_request=True)
    writer.write_record(writer.create_warc_record(uri, rtype, payload=BytesIO(body), http_headers=http))


def write_warc(path):
    with open(path, "wb") as f:
        w = WARCWriter(f, gzip=True)
        _record(w, "http://a.example/", b"", "", rtype="request")
        _record(w, "http://a.example/", "<h1>Caf\u00e9</h1><p>d\u00e9j\u00e0 vu</p>".encode("latin-1"),
                "text/html; charset=ISO-8859-1")
        _record(w, "http://b.example/logo.png", b"\x89PNG\r\n", "image/png")
        _record(w, "http://c.example/", b"<h1>moved</h1>", "text/html", status="404 Not Found")
        _record(w, "http://d.example/", b"<h2>bad \xff\xfe bytes</h2>", "text/html; charset=utf-8")
        _record(w, "http://e.example/", b"<h2>Fine</h2><p>utf-8 page</p>", "text/html")
    return path


def test_warc_records_kinds_and_charsets(tmp_path):
    got = items("warc", write_warc(tmp_path / "crawl.warc.gz"))
    assert [i.reason for i in got if isinstance(i, Skip)] == ["non_response", "non_html", "http_status"]
    docs = [i for i in got if isinstance(i, Document)]
    assert [d.url for d in docs] == ["http://a.example/", "http://e.example/"]
    assert "d\u00e9j\u00e0 vu" in docs[0].content and docs[0].doc_id.startswith("<urn:uuid:")
    (bad,) = [i for i in got if isinstance(i, DocReject)]
    assert bad.reason == "undecodable" and bad.url == "http://d.example/" and "record 5" in bad.detail


def test_warc_source_faults(tmp_path):
    data = write_warc(tmp_path / "ok.warc.gz").read_bytes()
    (tmp_path / "cut.warc.gz").write_bytes(data[:-40])
    with pytest.raises(InputError, match=r"cut\.warc\.gz.*truncated"):
        items("warc", tmp_path / "cut.warc.gz")
    (tmp_path / "junk.warc").write_text("hello\nnot a warc\n")
    with pytest.raises(InputError, match=r"junk\.warc, record 1: cannot read WARC"):
        items("warc", tmp_path / "junk.warc")
    (tmp_path / "empty.warc").write_bytes(b"")
    with pytest.raises(InputError, match="no WARC records"):
        items("warc", tmp_path / "empty.warc")


# ---------------------------------------------------------------- JSONL / Parquet

def test_jsonl_dump_with_per_record_faults(tmp_path):
    path = tmp_path / "dump.jsonl"
    lines = [json.dumps({"id": "d1", "url": "https://x/1", "text": "## H\n\nbody"}), "",
             "{not json", json.dumps([1, 2]), json.dumps({"id": "d4", "text": None}),
             json.dumps({"text": "no id here"})]
    path.write_bytes(("\n".join(lines) + "\n").encode() + b'{"text": "caf\xe9"}\n')
    got = items("table", path)
    assert [type(i).__name__ for i in got] == ["Document", "DocReject", "DocReject", "DocReject", "Document", "DocReject"]
    assert got[0] == Document("table", "d1", "https://x/1", "markdown", "## H\n\nbody", True)
    assert (got[1].reason, got[1].doc_id) == ("malformed_json", "dump.jsonl:3") and "line 3" in got[1].detail
    assert got[2].reason == "malformed_json" and "got list" in got[2].detail
    assert got[3].reason == "missing_text" and got[3].doc_id == "d4"
    assert got[4].doc_id == "dump.jsonl:6"
    assert got[5].reason == "undecodable"


def test_jsonl_custom_columns_and_gzip(tmp_path):
    path = tmp_path / "c4.jsonl.gz"
    with gzip.open(path, "wt") as f:
        f.write(json.dumps({"content": "hello", "key": 7, "link": "u"}) + "\n")
    (doc,) = items("table", path, text_column="content", id_column="key", url_column="link", allow_headerless=False)
    assert (doc.doc_id, doc.url, doc.content, doc.headerless_ok) == ("7", "u", "hello", False)


def test_table_source_faults(tmp_path):
    (tmp_path / "nocol.jsonl").write_text(json.dumps({"body": "x"}) + "\n")
    with pytest.raises(InputError, match=r"nocol\.jsonl, record line 1: missing key\(s\) text; has: body; set text_column"):
        items("table", tmp_path / "nocol.jsonl")
    (tmp_path / "blank.jsonl").write_text("\n\n")
    with pytest.raises(InputError, match=r"blank\.jsonl: no records"):
        items("table", tmp_path / "blank.jsonl")
    raw = gzip.compress(("\n".join(json.dumps({"text": f"t{i}" * 50}) for i in range(200)) + "\n").encode())
    (tmp_path / "cut.jsonl.gz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(InputError, match=r"cut\.jsonl\.gz, record line \d+: cannot read"):
        items("table", tmp_path / "cut.jsonl.gz")
    with pytest.raises(InputError, match="missing.jsonl: file not found"):
        items("table", tmp_path / "missing.jsonl")
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(InputError, match="directory has no"):
        items("table", tmp_path / "empty_dir")
    with pytest.raises(InputError, match="directory has no"):
        items("html", tmp_path / "empty_dir")
    (tmp_path / "data.csv").write_text("text\nx\n")
    with pytest.raises(InputError, match="unsupported file type"):
        items("table", tmp_path / "data.csv")
    with pytest.raises(InputError, match="needs a `path`"):
        items("warc", "")


def test_parquet_dump_columns_nulls_and_faults(tmp_path):
    path = tmp_path / "fineweb.parquet"
    pl.DataFrame({"text": ["# A\n\nx", None, "plain"], "id": ["a", "b", None], "url": ["u1", None, "u3"],
                  "score": [1.0, 2.0, 3.0]}).write_parquet(path)
    got = items("table", tmp_path)
    assert [(i.doc_id, type(i).__name__) for i in got] == [("a", "Document"), ("b", "DocReject"),
                                                            ("fineweb.parquet:2", "Document")]
    assert got[0].url == "u1" and got[1].reason == "missing_text"
    pl.DataFrame({"body": ["x"]}).write_parquet(tmp_path / "nocol.parquet")
    with pytest.raises(InputError, match=r"nocol\.parquet: missing column\(s\) text; has: body; set text_column"):
        items("table", tmp_path / "nocol.parquet")
    pl.DataFrame({"text": []}, schema={"text": pl.String}).write_parquet(tmp_path / "empty.parquet")
    with pytest.raises(InputError, match=r"empty\.parquet: no records"):
        items("table", tmp_path / "empty.parquet")
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(InputError, match=r"bad\.parquet: not a readable Parquet file"):
        items("table", tmp_path / "bad.parquet")
