"""Fuzzing the web readers: random bytes, mutated valid WARC files, random HTML soup and mutated
JSONL dumps. A reader may reject a record (with a reason) or the whole file (InputError naming it),
but nothing else may escape. A short run is in the default suite; the long one is `-m slow`.
"""

from __future__ import annotations

import gzip
import io
import json
import random
from collections import Counter
from pathlib import Path

import pytest
import reliability_plugin as ledger

from humpback.corpus.config import SourceConfig
from humpback.corpus.pipeline import sections_of
from humpback.corpus.sources import DocReject, Document, Skip, iter_source
from humpback.errors import InputError

pytest_plugins = ["reliability_plugin"]

TAGS = ["html", "head", "body", "title", "meta charset=\"utf-8\"", "h1", "h2", "h3", "h6", "p", "div", "span", "a href=x",
        "ul", "li", "table", "tr", "td", "pre", "code", "script", "style", "nav", "footer", "br", "img src=y", "svg",
        "template", "noscript", "iframe", "select", "option", "textarea", "math", "frameset", "plaintext", "xmp"]
BITS = ["<", ">", "</", "<!--", "-->", "<!DOCTYPE html>", "&amp;", "&#x0;", "&#xD800;", "&nbsp;", "\x00", "\r\n",
        "\ufeff", "\u202e", "é", "漢字", "🙂", "<![CDATA[", "]]>", "<?xml version='1.0'?>", "'\"", "=", "\\"]


def html_soup(rng: random.Random, size: int) -> str:
    out = []
    for _ in range(size):
        r = rng.random()
        if r < 0.35:
            out.append(f"<{rng.choice(TAGS)}>")
        elif r < 0.55:
            out.append(f"</{rng.choice(TAGS).split()[0]}>")
        elif r < 0.75:
            out.append(rng.choice(BITS))
        else:
            out.append(" ".join(rng.choice(["eggs", "boil", "water", "Header", "NAV", "x"]) for _ in range(rng.randint(1, 9))))
    return "".join(out)


def mutate(rng: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(5)
        i = rng.randrange(max(1, len(b)))
        if op == 0 and b:  # flip bytes
            for k in range(i, min(len(b), i + rng.randint(1, 8))):
                b[k] = rng.randrange(256)
        elif op == 1:  # truncate
            del b[i:]
        elif op == 2:  # insert junk
            b[i:i] = rng.randbytes(rng.randint(1, 64))
        elif op == 3:  # delete a range
            del b[i:i + rng.randint(1, 200)]
        else:  # duplicate a range
            b[i:i] = b[i:i + rng.randint(1, 300)]
    return bytes(b)


def warc_file(rng: random.Random, n: int, gz: bool) -> bytes:
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    buf = io.BytesIO()
    writer = WARCWriter(buf, gzip=gz)
    for k in range(n):
        ctype = rng.choice(["text/html", "text/html; charset=utf-8", "text/html; charset=latin-1", "application/pdf",
                            "application/xhtml+xml"])
        status = rng.choice(["200 OK", "200 OK", "404 Not Found"])
        body = html_soup(rng, rng.randint(5, 60)).encode("utf-8", "surrogatepass")
        headers = [("Content-Type", ctype)]
        if rng.random() < 0.2:
            headers.append(("Transfer-Encoding", "chunked"))
            body = f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n"
        if rng.random() < 0.2:
            headers.append(("Content-Encoding", "gzip"))
            body = gzip.compress(body) if rng.random() < 0.5 else body  # sometimes a lie
        http = StatusAndHeaders(status, headers, protocol="HTTP/1.1")
        writer.write_record(writer.create_warc_record(f"http://site/{k}", "response", payload=io.BytesIO(body),
                                                      http_headers=http))
        if rng.random() < 0.3:
            writer.write_record(writer.create_warc_record(f"http://site/{k}", "request", payload=io.BytesIO(b"GET /")))
    return buf.getvalue()


def consume(src: SourceConfig, outcomes: Counter) -> None:
    """Read a whole source and segment every document, as the corpus stage does; count what happened."""
    try:
        for item in iter_source(src):
            if isinstance(item, Document):
                try:
                    sections_of(item)
                    outcomes["document"] += 1
                except Exception as e:  # the stage rejects such a page as unparseable: counted, not fatal
                    outcomes[f"unparseable ({type(e).__name__})"] += 1
            elif isinstance(item, DocReject):
                outcomes[f"rejected: {item.reason}"] += 1
            else:
                assert isinstance(item, Skip)
                outcomes[f"skipped: {item.reason}"] += 1
    except InputError as e:
        assert "\n" not in str(e) and src.path in str(e)
        outcomes["file refused (InputError)"] += 1


def summary(outcomes: Counter) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items()))


def fuzz_warc(tmp_path: Path, n: int, seed: int) -> Counter:
    rng = random.Random(seed)
    outcomes: Counter = Counter()
    for i in range(n):
        gz = rng.random() < 0.6
        data = warc_file(rng, rng.randint(1, 6), gz)
        data = rng.randbytes(rng.randint(0, 3000)) if rng.random() < 0.1 else mutate(rng, data)
        path = tmp_path / f"f{i}.warc{'.gz' if gz else ''}"
        path.write_bytes(data)
        consume(SourceConfig(kind="warc", path=str(path)), outcomes)
        path.unlink()
    return outcomes


def fuzz_html(tmp_path: Path, n: int, seed: int) -> Counter:
    rng = random.Random(seed)
    site = tmp_path / "site"
    site.mkdir()
    for i in range(n):
        r = rng.random()
        if r < 0.2:
            data = rng.randbytes(rng.randint(0, 4000))
        else:
            text = html_soup(rng, rng.randint(1, 400))
            enc = rng.choice(["utf-8", "utf-16", "latin-1", "cp1252", "shift_jis"])
            data = text.encode(enc, "replace")
            data = mutate(rng, data) if r < 0.5 else data
        (site / f"p{i:05d}.html").write_bytes(data)
    outcomes: Counter = Counter()
    consume(SourceConfig(kind="html", path=str(site)), outcomes)
    return outcomes


def fuzz_jsonl(tmp_path: Path, n: int, seed: int) -> Counter:
    rng = random.Random(seed)
    outcomes: Counter = Counter()
    for i in range(n):
        lines = [json.dumps({"id": f"d{k}", "text": html_soup(rng, 20)}) for k in range(rng.randint(1, 20))]
        data = mutate(rng, ("\n".join(lines) + "\n").encode())
        gz = rng.random() < 0.3
        path = tmp_path / f"d{i}.jsonl{'.gz' if gz else ''}"
        path.write_bytes(mutate(rng, gzip.compress(data)) if gz else data)
        consume(SourceConfig(kind="table", path=str(path)), outcomes)
        path.unlink()
    return outcomes


@pytest.mark.parametrize("reader,fuzz,n", [("WARC", fuzz_warc, 300), ("HTML", fuzz_html, 400), ("table JSONL", fuzz_jsonl, 200)])
def test_fuzz_short(tmp_path, reader, fuzz, n):
    outcomes = fuzz(tmp_path, n, seed=1)
    assert outcomes["document"] > 0  # the fuzzer still reaches the segmenter
    ledger.fault("fuzz (default run)", f"{reader}: {n} random or mutated files", summary(outcomes))


@pytest.mark.slow
@pytest.mark.parametrize("reader,fuzz,n", [("WARC", fuzz_warc, 20_000), ("HTML", fuzz_html, 20_000), ("table JSONL", fuzz_jsonl, 20_000)])
def test_fuzz_long(tmp_path, reader, fuzz, n):
    outcomes = fuzz(tmp_path, n, seed=2)
    assert outcomes["document"] > 0
    ledger.fault("fuzz (slow run)", f"{reader}: {n} random or mutated files", summary(outcomes))
