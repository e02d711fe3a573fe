"""Bad input for every reader: each case is either a clear error naming the file (and the record or
key) or, for a per-record fault in a large corpus, a rejected row with a reason that is counted.

Readers: seed pairs (JSONL, Parquet), oasst (flat, trees), corpus HTML, WARC and table dumps
(JSONL, Parquet), eval prompts, reference outputs (AlpacaEval JSON) and params.yaml.
"""

from __future__ import annotations

import gzip
import io
import json
import random
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest
import reliability_plugin as ledger

from humpback.config import load_section, validate_all
from humpback.corpus import CorpusConfig, prepare_corpus
from humpback.corpus.config import SourceConfig
from humpback.errors import ConfigError, EmptyResultError, HumpbackError, InputError
from humpback.evaluation.inputs import load_outputs, load_prompts
from humpback.seed import SeedConfig, SeedSource, build_seed

pytest_plugins = ["reliability_plugin"]

JUNK = random.Random(7).randbytes(4096)
GOOD_PAIR = {"instruction": "How do I boil an egg?", "output": "Put it in boiling water for nine minutes."}
DEEP = '{"instruction": ' + "[" * 50_000 + "]" * 50_000 + ', "output": "x"}\n'


def jsonl(*records) -> str:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records)


def write(path: Path, data: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
    return path


def parquet(path: Path, frame: dict) -> Path:
    pl.DataFrame(frame).write_parquet(path)
    return path


def expect_error(reader: str, case: str, fn: Callable[[], object], *needles: str, kind=HumpbackError) -> str:
    """`fn` must fail with one clear line that contains every needle; record what it said."""
    with pytest.raises(kind) as info:
        fn()
    msg = str(info.value)
    assert "\n" not in msg, msg
    for needle in needles:
        assert needle in msg, f"{needle!r} not in {msg!r}"
    ledger.bad_input(reader, case, f"{type(info.value).__name__}: {msg}")
    return msg


# --------------------------------------------------------------------------- seed pairs

def seed(path: Path, kind: str = "pairs", **kw) -> Callable[[], object]:
    return lambda: build_seed(SeedConfig(sources=[SeedSource(path=str(path), kind=kind, **kw)]))


SEED_JSONL = [
    ("malformed record", jsonl(GOOD_PAIR, "{oops"), ["line 2", "malformed JSON"]),
    ("array instead of object", jsonl(GOOD_PAIR, "[1, 2]"), ["line 2", "expected a JSON object, got list"]),
    ("number as instruction", jsonl({"instruction": 5, "output": "x"}), ["line 1", "'instruction' must be a string"]),
    ("object as output", jsonl({"instruction": "q", "output": {"a": 1}}), ["line 1", "'output' must be a string"]),
    ("NaN as instruction", jsonl('{"instruction": NaN, "output": "x"}'), ["line 1", "got float"]),
    ("missing field", jsonl(GOOD_PAIR, {"instruction": "q"}), ["line 2", "missing key(s) output"]),
    ("empty file", "", ["no records"]),
    ("blank lines only", "\n  \n\n", ["no records"]),
    ("binary junk", JUNK, ["not valid UTF-8"]),
    ("latin-1 text", jsonl({"instruction": "café", "output": "x"}).replace("\\u00e9", "é").encode("latin-1"),
     ["not valid UTF-8"]),
    ("UTF-16 text", jsonl(GOOD_PAIR).encode("utf-16"), ["not valid UTF-8"]),
    ("control character", b'{"instruction": "a\x00b", "output": "x"}\n', ["line 1", "Invalid control character"]),
    ("nested 50k deep", DEEP, ["line 1", "nested too deeply"]),
    ("unpaired surrogate escape", '{"instruction": "bad \\ud800 text", "output": "x"}\n', ["line 1", "surrogate"]),
]


@pytest.mark.parametrize("case,data,needles", SEED_JSONL, ids=[c[0] for c in SEED_JSONL])
def test_seed_jsonl(tmp_path, case, data, needles):
    path = write(tmp_path / "pairs.jsonl", data)
    expect_error("seed pairs JSONL", case, seed(path), "pairs.jsonl", *needles)


def test_seed_jsonl_gzip_faults(tmp_path):
    body = jsonl(*[GOOD_PAIR] * 300).encode()
    expect_error("seed pairs JSONL", "truncated gzip", seed(write(tmp_path / "t.jsonl.gz", gzip.compress(body)[:-40])),
                 "t.jsonl.gz", "cannot read")
    expect_error("seed pairs JSONL", "plain text named .gz", seed(write(tmp_path / "p.jsonl.gz", body)),
                 "p.jsonl.gz", "Not a gzipped file")
    expect_error("seed pairs JSONL", "binary junk named .gz", seed(write(tmp_path / "j.jsonl.gz", JUNK)),
                 "j.jsonl.gz", "cannot read")


def test_seed_huge_record_and_bom_are_read(tmp_path):
    # a 20 MB answer is data, not a fault: it is read and then filtered by max_chars with a reason
    huge = write(tmp_path / "huge.jsonl", jsonl(GOOD_PAIR, {"instruction": "q" * 10, "output": "x" * 8_000_000}))
    result = build_seed(SeedConfig(sources=[SeedSource(path=str(huge))], max_chars=10_000))
    assert result.kept.height == 1 and result.metrics["rejected"] == {"long_output": 1}
    ledger.bad_input("seed pairs JSONL", "huge record (20 MB)", "rejected: long_output 1")
    bom = write(tmp_path / "bom.jsonl", "\ufeff" + jsonl(GOOD_PAIR))
    assert build_seed(SeedConfig(sources=[SeedSource(path=str(bom))])).kept.height == 1
    ledger.bad_input("seed pairs JSONL", "UTF-8 byte-order mark", "read: 1 pair")


def test_seed_parquet(tmp_path):
    r = "seed pairs Parquet"
    expect_error(r, "binary junk", seed(write(tmp_path / "junk.parquet", JUNK)), "junk.parquet", "not a readable Parquet")
    expect_error(r, "empty file", seed(write(tmp_path / "empty.parquet", b"")), "empty.parquet", "not a readable Parquet")
    good = parquet(tmp_path / "good.parquet", {"instruction": ["q"] * 50, "output": ["a"] * 50})
    expect_error(r, "truncated file", seed(write(tmp_path / "cut.parquet", good.read_bytes()[:-64])), "cut.parquet")
    expect_error(r, "zero rows", seed(parquet(tmp_path / "none.parquet", {"instruction": [], "output": []})),
                 "none.parquet", "no records")
    expect_error(r, "integer instruction column", seed(parquet(tmp_path / "int.parquet", {"instruction": [1], "output": ["a"]})),
                 "int.parquet", "row 0", "'instruction' must be a string")
    expect_error(r, "missing column", seed(parquet(tmp_path / "col.parquet", {"prompt": ["q"], "output": ["a"]})),
                 "col.parquet", "missing column(s) instruction")
    expect_error(r, "list as id", seed(parquet(tmp_path / "id.parquet", {"instruction": ["q"], "output": ["a"], "id": [[1]]}),
                                       id_column="id"), "id.parquet", "row 0", "'id' must be a string or number")
    expect_error(r, "wrong extension", seed(write(tmp_path / "pairs.csv", "instruction,output\n")), "pairs.csv",
                 "unsupported file type")
    expect_error(r, "missing path", seed(tmp_path / "nowhere.parquet"), "nowhere.parquet", "file not found")


def test_seed_nothing_left_names_every_source(tmp_path):
    path = write(tmp_path / "short.jsonl", jsonl({"instruction": "q", "output": ""}))
    expect_error("seed pairs JSONL", "no seed pairs after filtering", seed(path), "rejected: empty_output 1",
                 kind=EmptyResultError)


# --------------------------------------------------------------------------- oasst

def msg(mid, role, text="t", parent=None, **kw):
    return {"message_id": mid, "parent_id": parent, "role": role, "text": text, "lang": "en", **kw}


OASST = [
    ("flat", "unknown role", jsonl(msg("a", "bot")), ["line 1", "role must be 'prompter' or 'assistant'"]),
    ("flat", "missing text", jsonl({"message_id": "a", "role": "prompter"}), ["line 1", "missing key(s) text"]),
    ("flat", "list as text", jsonl(msg("a", "prompter", ["x"])), ["line 1", "'text' must be a string"]),
    ("flat", "rank as string", jsonl(msg("a", "prompter"), msg("b", "assistant", parent="a", rank="0")),
     ["line 2", "rank must be an integer or null"]),
    ("flat", "object as message_id", jsonl(msg({"x": 1}, "prompter")), ["line 1", "usable message_id"]),
    ("flat", "deleted as string", jsonl(msg("a", "prompter", deleted="yes")), ["line 1", "deleted must be"]),
    ("flat", "empty file", "", ["no records"]),
    ("trees", "prompt is a string", jsonl({"prompt": "hi"}), ["line 1", "'prompt' must be a message object"]),
    ("trees", "replies is an object", jsonl({"prompt": {**msg("a", "prompter"), "replies": {"b": 1}}}),
     ["line 1, message a", "'replies' must be a list"]),
    ("trees", "reply without id", jsonl({"prompt": {**msg("a", "prompter"), "replies": [{"role": "assistant", "text": "x"}]}}),
     ["line 1, message None", "usable message_id"]),
    ("trees", "missing prompt", jsonl({"message_tree_id": "x"}), ["line 1", "missing key(s) prompt"]),
    ("trees", "truncated record", jsonl({"prompt": msg("a", "prompter")})[:-10], ["line 1", "malformed JSON"]),
]


@pytest.mark.parametrize("layout,case,data,needles", OASST, ids=[f"{c[0]}-{c[1]}" for c in OASST])
def test_oasst(tmp_path, layout, case, data, needles):
    path = write(tmp_path / f"oasst.{'trees' if layout == 'trees' else 'messages'}.jsonl", data)
    expect_error(f"oasst {layout}", case, seed(path, kind="oasst"), path.name, *needles)


def test_oasst_parquet_and_gzip(tmp_path):
    expect_error("oasst flat", "Parquet without the message columns",
                 seed(parquet(tmp_path / "x.parquet", {"instruction": ["q"]}), kind="oasst"), "x.parquet",
                 "missing column(s) message_id")
    trees = jsonl(*[{"prompt": {**msg(f"p{i}", "prompter"), "replies": [msg(f"r{i}", "assistant", rank=0)]}}
                    for i in range(200)]).encode()
    expect_error("oasst trees", "truncated gzip",
                 seed(write(tmp_path / "o.trees.jsonl.gz", gzip.compress(trees)[:-30]), kind="oasst"),
                 "o.trees.jsonl.gz", "cannot read")


# --------------------------------------------------------------------------- corpus table dumps: per-record faults

GOOD_DOC = "# Eggs\n\n## Boiling eggs\n\n" + "Put the eggs in boiling water for nine minutes, then cool them. " * 8


def corpus(tmp_path: Path, kind: str, path: Path, **kw) -> dict:
    cfg = CorpusConfig(sources=[SourceConfig(kind=kind, path=str(path))], min_chars=100, **kw)
    return prepare_corpus(cfg, tmp_path / "segments.parquet", tmp_path / "rejected.parquet")


def test_corpus_jsonl_per_record_faults_are_rejected_and_counted(tmp_path):
    # 2,000 good documents with one of every record fault among them: the run goes on, each fault
    # is a rejected row with its reason, and the good documents all arrive.
    faults = {
        "malformed record": ("{oops", "malformed_json"),
        "array instead of object": ("[1, 2]", "malformed_json"),
        "nested 50k deep": ('{"text": ' + "[" * 50_000 + "]" * 50_000 + "}", "malformed_json"),
        "number as text": (json.dumps({"id": "n", "text": 5}), "missing_text"),
        "missing text field": (json.dumps({"id": "m"}), "missing_text"),
        "unpaired surrogate escape": ('{"id": "s", "text": "bad \\ud800 ' + "word " * 50 + '"}', "undecodable"),
    }
    lines = [json.dumps({"id": f"d{i}", "text": GOOD_DOC.replace("Eggs", f"Eggs {i}").replace("nine", f"{i} nine")})
             for i in range(2000)]
    for k, (line, _) in enumerate(faults.values()):
        lines.insert(100 + 300 * k, line)
    data = ("\n".join(lines) + "\n").encode()
    data = data.replace(b'{"id": "d1500"', b'{"id": "\xff\xfe bad"', 1)  # one line that is not UTF-8
    m = corpus(tmp_path, "table", write(tmp_path / "dump.jsonl", data), near_dedup=False)
    want = {"malformed_json": 3, "missing_text": 2, "undecodable": 2}
    assert {r: m["rejected"].get(r, 0) for r in want} == want
    assert m["docs_in"] == 2000 + len(faults) and m["docs_rejected"] == sum(want.values())
    assert m["segments_kept"] == 1999  # every good document but the one whose line was not UTF-8
    rejected = pl.read_parquet(tmp_path / "rejected.parquet")
    details = rejected.filter(pl.col("position") == -1)["detail"].to_list()
    assert all(d.startswith("line ") for d in details) and len(details) == sum(want.values())
    for case, (_, reason) in faults.items():
        ledger.bad_input("corpus table JSONL", f"per-record: {case}", f"rejected: {reason}")
    ledger.bad_input("corpus table JSONL", "per-record: line not UTF-8", "rejected: undecodable")


def test_corpus_huge_records_are_filtered_not_fatal(tmp_path):
    data = jsonl({"id": "ok", "text": GOOD_DOC}, {"id": "words", "text": "# H\n\n" + "word " * 1_500_000},
                 {"id": "line", "text": "x" * 8_000_000})
    m = corpus(tmp_path, "table", write(tmp_path / "huge.jsonl", data))
    assert m["segments_kept"] == 1 and m["rejected"]["too_long"] == 2
    ledger.bad_input("corpus table JSONL", "huge records (8 MB on one line, 7 MB of words)", "rejected: too_long 2")


def test_corpus_table_source_faults(tmp_path):
    r = "corpus table JSONL"
    dump = jsonl(*[{"id": str(i), "text": GOOD_DOC} for i in range(300)]).encode()
    expect_error(r, "truncated gzip", lambda: corpus(tmp_path, "table", write(tmp_path / "t.jsonl.gz", gzip.compress(dump)[:-40])),
                 "t.jsonl.gz", "record line", "cannot read")
    expect_error(r, "binary junk named .gz", lambda: corpus(tmp_path, "table", write(tmp_path / "b.jsonl.gz", JUNK)),
                 "b.jsonl.gz", "cannot read")
    expect_error(r, "empty file", lambda: corpus(tmp_path, "table", write(tmp_path / "e.jsonl", b"")), "e.jsonl", "no records")
    expect_error(r, "first record without the text column",
                 lambda: corpus(tmp_path, "table", write(tmp_path / "c.jsonl", jsonl({"id": 1, "body": GOOD_DOC}))),
                 "c.jsonl", "line 1", "missing key(s) text; has: id, body", "set text_column")
    expect_error(r, "binary junk (every line undecodable)",
                 lambda: corpus(tmp_path, "table", write(tmp_path / "j.jsonl", JUNK)), "no segment survived", "undecodable",
                 kind=EmptyResultError)
    r = "corpus table Parquet"
    expect_error(r, "binary junk", lambda: corpus(tmp_path, "table", write(tmp_path / "j.parquet", JUNK)),
                 "j.parquet", "not a readable Parquet")
    good = parquet(tmp_path / "g.parquet", {"id": ["a"], "text": [GOOD_DOC]})
    expect_error(r, "truncated file", lambda: corpus(tmp_path, "table", write(tmp_path / "cut.parquet", good.read_bytes()[:-10])),
                 "cut.parquet", "not a readable Parquet")
    expect_error(r, "no text column", lambda: corpus(tmp_path, "table", parquet(tmp_path / "n.parquet", {"body": ["x"]})),
                 "n.parquet", "missing column(s) text; has: body", "set text_column")
    expect_error(r, "zero rows", lambda: corpus(tmp_path, "table", parquet(tmp_path / "z.parquet", {"text": []})),
                 "z.parquet", "no records")
    m = corpus(tmp_path, "table", parquet(tmp_path / "nulls.parquet", {"id": ["a", "b"], "text": [GOOD_DOC, None]}))
    assert m["rejected"]["missing_text"] == 1 and m["segments_kept"] == 1
    ledger.bad_input(r, "per-record: null text", "rejected: missing_text")
    expect_error(r, "integer text column (nothing left)",
                 lambda: corpus(tmp_path, "table", parquet(tmp_path / "i.parquet", {"text": [1, 2]})),
                 "no segment survived", "missing_text", kind=EmptyResultError)


# --------------------------------------------------------------------------- corpus HTML

def test_corpus_html_pages(tmp_path):
    site = tmp_path / "site"
    good = "<h2>Boiling eggs</h2><p>" + "Put the eggs in boiling water for nine minutes. " * 5 + "</p>"
    write(site / "good.html", good)
    write(site / "empty.html", b"")
    write(site / "junk.html", JUNK)
    write(site / "latin1.html", ("<h2>Café</h2><p>" + "café au lait " * 20 + "</p>").encode("latin-1"))
    write(site / "klingon.html", b'<meta charset="klingon"><h2>x</h2><p>' + b"word " * 40 + b"\xff</p>")
    # (lexbor's parse time grows with the square of the nesting depth: 50k levels take ~8 s)
    write(site / "deep.html", "<h2>Deep nesting</h2>" + "<div>" * 10_000 + "Deep text. " * 20 + "</div>" * 10_000)
    write(site / "unclosed.html", "<h2>Open tags</h2><p>" + "<b><i><table><tr><td>cell text " * 2000)
    write(site / "nul.html", b"<h2>Nul bytes</h2><p>" + b"a\x00b " * 100 + b"</p>")
    write(site / "huge.html", "<h2>Huge</h2><p>" + "word " * 2_000_000 + "</p>")
    write(site / "script.html", "<script>" + "x" * 5000 + "</script>")
    m = corpus(tmp_path, "html", site)
    assert m["docs_in"] == 10 and m["rejected"]["undecodable"] == 3  # junk, latin-1 undeclared, unknown charset
    assert m["rejected"]["empty_document"] == 2  # the empty page and the script-only one: nothing visible
    assert m["rejected"]["too_long"] >= 1 and m["segments_kept"] >= 3
    rej = pl.read_parquet(tmp_path / "rejected.parquet")
    assert set(rej.filter(reason="undecodable")["doc_id"]) == {"junk.html", "latin1.html", "klingon.html"}
    assert "unknown charset 'klingon'" in rej.filter(doc_id="klingon.html")["detail"][0]
    for case, outcome in [("empty page", "rejected: empty_document"), ("binary junk", "rejected: undecodable"),
                          ("latin-1 without a declared charset", "rejected: undecodable"),
                          ("unknown declared charset", "rejected: undecodable (names the charset)"),
                          ("10k nested divs", "segmented"), ("unclosed tags", "segmented"),
                          ("NUL bytes", "segmented"), ("huge page (10 MB)", "rejected: too_long"),
                          ("script only", "rejected: empty_document")]:
        ledger.bad_input("corpus HTML", case, outcome)
    expect_error("corpus HTML", "empty directory", lambda: corpus(tmp_path, "html", (tmp_path / "none").mkdir() or tmp_path / "none"),
                 "none", "directory has no .html")
    expect_error("corpus HTML", "missing path", lambda: corpus(tmp_path, "html", tmp_path / "nowhere"), "nowhere", "file not found")


# --------------------------------------------------------------------------- corpus WARC

def warc_bytes(records, gz=True) -> bytes:
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    buf = io.BytesIO()
    writer = WARCWriter(buf, gzip=gz)
    for uri, body, ctype in records:
        http = StatusAndHeaders("200 OK", [("Content-Type", ctype)], protocol="HTTP/1.1")
        writer.write_record(writer.create_warc_record(uri, "response", payload=io.BytesIO(body), http_headers=http))
    return buf.getvalue()


PAGE = ("<h2>Boiling eggs</h2><p>" + "Put the eggs in boiling water for nine minutes. " * 5 + "</p>").encode()


def test_corpus_warc_faults(tmp_path):
    r = "corpus WARC"
    good = warc_bytes([("http://a/", PAGE, "text/html"), ("http://b/", PAGE.replace(b"eggs", b"ham"), "text/html")])
    expect_error(r, "truncated gzip", lambda: corpus(tmp_path, "warc", write(tmp_path / "t.warc.gz", good[:-50])),
                 "t.warc.gz", "record 1", "truncated")
    expect_error(r, "empty file", lambda: corpus(tmp_path, "warc", write(tmp_path / "e.warc.gz", b"")), "e.warc.gz",
                 "no WARC records")
    expect_error(r, "binary junk (.warc.gz)", lambda: corpus(tmp_path, "warc", write(tmp_path / "j.warc.gz", JUNK)),
                 "j.warc.gz", "cannot read WARC")
    expect_error(r, "binary junk (.warc)", lambda: corpus(tmp_path, "warc", write(tmp_path / "j.warc", JUNK)),
                 "j.warc", "cannot read WARC")
    plain = warc_bytes([("http://a/", PAGE, "text/html")], gz=False)
    expect_error(r, "uncompressed WARC named .gz", lambda: corpus(tmp_path, "warc", write(tmp_path / "p.warc.gz", plain)),
                 "p.warc.gz", "Not a gzipped file")
    expect_error(r, "corrupt version line", lambda: corpus(tmp_path, "warc", write(tmp_path / "v.warc", plain.replace(b"WARC/1", b"WORC/1", 1))),
                 "v.warc", "cannot read WARC")
    # per-record faults: an undecodable page and a huge page are rejected; the good pages arrive
    mixed = good + warc_bytes([("http://c/", b"\x81\x82\xfa" * 200, "text/html; charset=utf-8"),
                               ("http://d/", b"<h2>Huge</h2><p>" + b"word " * 2_000_000 + b"</p>", "text/html"),
                               ("http://e/", b"%PDF-1.4 binary", "application/pdf")])
    m = corpus(tmp_path, "warc", write(tmp_path / "mixed.warc.gz", mixed))
    assert m["segments_kept"] == 2 and m["rejected"] == {"too_long": 1, "undecodable": 1}
    assert m["skipped_records"] == {"non_html": 1}
    ledger.bad_input(r, "per-record: page not in its declared charset", "rejected: undecodable")
    ledger.bad_input(r, "per-record: huge page (10 MB)", "rejected: too_long")
    ledger.bad_input(r, "per-record: PDF response", "skipped: non_html")


# --------------------------------------------------------------------------- eval prompts and reference outputs

PROMPTS = [
    ("string records", '"hello"\n', "prompts.jsonl", ["line 1", "expected a JSON object"]),
    ("integer instruction", jsonl({"id": 1, "instruction": 3}), "prompts.jsonl", ["record line 1", "'instruction' must be a string"]),
    ("empty instruction", jsonl({"id": 1, "instruction": "  "}), "prompts.jsonl", ["record line 1", "empty 'instruction'"]),
    ("missing instruction", jsonl({"id": 1, "prompt": "x"}), "prompts.jsonl", ["record line 1", "missing key(s) instruction"]),
    ("duplicate id", jsonl({"id": 1, "instruction": "a"}, {"id": 1, "instruction": "b"}), "prompts.jsonl",
     ["record line 2", "duplicate id '1'", "first at record line 1"]),
    ("null id", jsonl({"id": "a", "instruction": "a"}, {"id": None, "instruction": "b"}), "prompts.jsonl",
     ["record line 2", "missing 'id'"]),
    ("empty file", "", "prompts.jsonl", ["no records"]),
    ("binary junk", JUNK, "prompts.jsonl", ["not valid UTF-8"]),
    ("truncated gzip", gzip.compress(jsonl(*[{"instruction": "a"}] * 200).encode())[:-20], "prompts.jsonl.gz",
     ["cannot read"]),
    ("AlpacaEval JSON object, not list", '{"instruction": "a"}', "eval.json", ["expected a JSON list"]),
    ("AlpacaEval JSON empty list", "[]", "eval.json", ["no records"]),
    ("AlpacaEval JSON empty file", "", "eval.json", ["malformed JSON"]),
    ("AlpacaEval JSON binary junk", JUNK, "eval.json", ["not valid UTF-8"]),
    ("AlpacaEval JSON latin-1", '[{"instruction": "café"}]'.encode("latin-1"), "eval.json", ["not valid UTF-8"]),
    ("AlpacaEval JSON nested 50k deep", "[" * 50_000 + "]" * 50_000, "eval.json", ["nested too deeply"]),
    ("AlpacaEval JSON null record", "[null]", "eval.json", ["record 0", "expected a JSON object, got NoneType"]),
    ("unsupported extension", "instruction\nhello\n", "prompts.csv", ["unsupported file type"]),
    ("Parquet junk", JUNK, "prompts.parquet", ["not a readable Parquet"]),
]


@pytest.mark.parametrize("case,data,name,needles", PROMPTS, ids=[c[0] for c in PROMPTS])
def test_eval_prompts(tmp_path, case, data, name, needles):
    path = write(tmp_path / name, data)
    expect_error("eval prompts", case, lambda: load_prompts(path), name, *needles, kind=InputError)


OUTPUTS = [
    ("null instruction", [{"instruction": None, "output": "a"}], ["record 0", "'instruction' must be a string"]),
    ("number as output", [{"instruction": "a", "output": 3}], ["record 0", "'output' must be a string"]),
    ("missing output", [{"instruction": "a"}], ["record 0", "missing key(s) output"]),
    ("duplicate instruction", [{"instruction": "a", "output": "b"}, {"instruction": "a", "output": "c"}],
     ["record 1", "duplicate instruction"]),
    ("list as record", [["a", "b"]], ["record 0", "expected a JSON object, got list"]),
    ("unpaired surrogate escape", '[{"instruction": "a", "output": "bad \\udc00"}]', ["record 0", "surrogate"]),
    ("truncated JSON", json.dumps([{"instruction": "a", "output": "b"}] * 20)[:-7], ["malformed JSON"]),
]


@pytest.mark.parametrize("case,data,needles", OUTPUTS, ids=[c[0] for c in OUTPUTS])
def test_reference_outputs(tmp_path, case, data, needles):
    path = write(tmp_path / "davinci.json", data if isinstance(data, str) else json.dumps(data))
    expect_error("reference outputs (AlpacaEval JSON)", case, lambda: load_outputs(path), "davinci.json", *needles,
                 kind=InputError)


def test_reference_outputs_tolerate_extra_fields_and_huge_answers(tmp_path):
    recs = [{"instruction": "a", "output": "b" * 10_000_000, "generator": None, "extra": {"x": [1]}},
            {"instruction": "c", "output": "", "generator": "g", "dataset": ["x"]}]
    out = load_outputs(write(tmp_path / "ref.json", json.dumps(recs)))
    assert out.height == 2 and out["generator"].to_list() == ["ref", "g"]
    ledger.bad_input("reference outputs (AlpacaEval JSON)", "huge answer, nested extra fields, null generator",
                     "read: extras ignored, generator from the file name")


# --------------------------------------------------------------------------- params.yaml

PARAMS = [
    ("unknown section", "seeds: {}\n", ["unknown section(s) seeds"]),
    ("unknown key", "seed:\n  colour: red\n", ["seed: unknown key(s) colour"]),
    ("unknown nested key", "seed:\n  sources:\n    - {path: x.jsonl, colour: red}\n", ["seed.sources[0]", "colour"]),
    ("wrong type", "seed:\n  max_examples: lots\n", ["seed.max_examples: expected an integer"]),
    ("bool for an int", "seed:\n  max_examples: true\n", ["seed.max_examples", "got True"]),
    ("float for an int", "seed:\n  seed: 1.5\n", ["seed.seed", "got 1.5"]),
    ("date for a string", "seed:\n  lang: 2024-01-01\n", ["seed.lang: expected a string"]),
    ("value not in the choices", "seed:\n  sources:\n    - {path: x, kind: csv}\n", ["seed.sources[0].kind", "'csv'"]),
    ("required key missing", "seed:\n  sources:\n    - {kind: pairs}\n", ["seed.sources[0].path: required key"]),
    ("section is a list", "seed: [1, 2]\n", ["seed: expected a mapping"]),
    ("top level is a list", "- a\n- b\n", ["top level must be a mapping"]),
    ("duplicate key", "seed:\n  seed: 1\n  seed: 2\n", ["duplicate key", "line 3"]),
    ("tab indentation", "seed:\n\tseed: 1\n", ["not valid YAML", "line 2"]),
    ("unclosed bracket", "seed: [\n", ["not valid YAML", "line 2"]),
    ("nested 1k deep", "seed: " + "[" * 1_000 + "]" * 1_000 + "\n", ["nested too deeply"]),
    ("binary junk", JUNK, ["not valid YAML"]),
    ("latin-1 text", "seed:\n  lang: café\n".encode("latin-1"), ["not valid YAML"]),
    ("iteration loop", "iterations:\n  it1: {prev: it2}\n  it2: {prev: it1}\n", ["never reaches m0"]),
    ("iteration names an unknown model", "iterations:\n  it1: {prev: it0}\n", ["iterations.it1.prev", "'it0'"]),
    ("top_share of 2", "select:\n  top_share: 2\n", ["select.top_share: 2 is out of range (must be >= 0 and <= 1)"]),
    ("chunk size of 0", "score:\n  chunk_size: 0\n", ["score.chunk_size: 0 is out of range (must be >= 1)"]),
    ("final lr ratio above 1", "train:\n  final_lr_ratio: 1.5\n", ["train.final_lr_ratio: 1.5 is out of range"]),
]


@pytest.mark.parametrize("case,data,needles", PARAMS, ids=[c[0] for c in PARAMS])
def test_params_yaml(tmp_path, case, data, needles):
    path = write(tmp_path / "params.yaml", data)
    if needles is None:
        validate_all(path)
        return
    expect_error("params.yaml", case, lambda: validate_all(path), "params.yaml", *needles, kind=ConfigError)


def test_params_missing_or_empty(tmp_path):
    expect_error("params.yaml", "missing file", lambda: load_section("seed", tmp_path / "params.yaml"),
                 "params.yaml", "not found", kind=ConfigError)
    empty = write(tmp_path / "empty.yaml", "")
    assert load_section("seed", empty) == SeedConfig()  # an empty file means every default, as documented
    ledger.bad_input("params.yaml", "empty file", "every section at its defaults")
