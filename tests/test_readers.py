"""The shared record reader: file discovery, labels, gzip, Parquet batches, per-record faults read
strictly or tolerantly, and the same wording for the same fault from every caller."""

from __future__ import annotations

import gzip
import json

import polars as pl
import pytest

from humpback import readers
from humpback.corpus.config import SourceConfig
from humpback.corpus.sources import DocReject, Document, iter_source
from humpback.errors import InputError
from humpback.evaluation.inputs import load_prompts
from humpback.readers import Record, find_files, iter_records, read_table
from humpback.seed import SeedConfig, SeedSource, build_seed
from humpback.training.data import read_pairs

GOOD = {"instruction": "How do I boil an egg?", "output": "Nine minutes in boiling water.", "text": "# Eggs\n\nBoil."}


def lines(*records) -> bytes:
    return b"".join((r if isinstance(r, bytes) else json.dumps(r).encode()) + b"\n" for r in records)


def write(path, data: bytes):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


# ---------------------------------------------------------------- labels, gzip, Parquet

def test_lines_are_numbered_from_one_counting_blank_lines(tmp_path):
    data = "\ufeff".encode() + lines({"a": 1}, b"", b"   ", {"a": 2}) + b"\r\n" + json.dumps({"a": 3}).encode()
    got = list(iter_records(write(tmp_path / "x.jsonl", data)))
    assert [(r.label, r.number, r.data) for r in got] == [("line 1", 1, {"a": 1}), ("line 4", 4, {"a": 2}),
                                                         ("line 6", 6, {"a": 3})]
    assert all(r.fault is None for r in got)


@pytest.mark.parametrize("name", ["x.jsonl.gz", "x.json.gz", "x.ndjson.gz"])
def test_gzip_is_read_by_its_suffix_with_the_same_labels(tmp_path, name):
    plain = lines({"a": 1}, b"", b"{oops", {"a": 2})
    want = [(r.label, r.data, r.fault) for r in iter_records(write(tmp_path / "x.jsonl", plain))]
    got = [(r.label, r.data, r.fault) for r in iter_records(write(tmp_path / name, gzip.compress(plain)))]
    assert got == want and got[1][2].reason == "malformed_json"


def test_gzip_source_faults_name_file_and_line(tmp_path):
    body = lines(*[{"a": "x" * 40}] * 2000)
    cut = write(tmp_path / "cut.jsonl.gz", gzip.compress(body)[:-30])
    with pytest.raises(InputError, match=r"cut\.jsonl\.gz, record line \d+: cannot read \(EOFError"):
        list(iter_records(cut))
    with pytest.raises(InputError, match=r"plain\.jsonl\.gz, record line 1: cannot read .*Not a gzipped file"):
        list(iter_records(write(tmp_path / "plain.jsonl.gz", body)))


def test_parquet_streams_in_batches_with_rows_counted_from_zero(tmp_path, monkeypatch):
    monkeypatch.setattr(readers, "PARQUET_BATCH_ROWS", 3)
    path = tmp_path / "t.parquet"
    pl.DataFrame({"a": list(range(10)), "b": [f"v{i}" for i in range(10)], "big": ["x"] * 10}).write_parquet(
        path, row_group_size=4)
    got = list(iter_records(path, ["a"], ["b", "absent"]))
    assert [r.label for r in got] == [f"row {i}" for i in range(10)] and [r.number for r in got] == list(range(10))
    assert got[7].data == {"a": 7, "b": "v7"}  # only the columns asked for
    assert list(iter_records(path))[0].data == {"a": 0, "b": "v0", "big": "x"}
    assert pl.read_parquet(path).row(7, named=True)["a"] == got[7].data["a"]  # the label finds the row


def test_parquet_source_faults(tmp_path):
    pl.DataFrame({"a": [1]}).write_parquet(tmp_path / "a.parquet")
    with pytest.raises(InputError, match=r"a\.parquet: missing column\(s\) b, c; has: a; set b$"):
        list(iter_records(tmp_path / "a.parquet", ["a", "b", "c"], hint="set b"))
    pl.DataFrame({"a": []}, schema={"a": pl.Int64}).write_parquet(tmp_path / "none.parquet")
    with pytest.raises(InputError, match=r"none\.parquet: no records"):
        list(iter_records(tmp_path / "none.parquet"))
    assert list(iter_records(tmp_path / "none.parquet", allow_empty=True)) == []
    with pytest.raises(InputError, match=r"junk\.parquet: not a readable Parquet file"):
        list(iter_records(write(tmp_path / "junk.parquet", b"PAR1 not really")))


# ---------------------------------------------------------------- per-record faults

FAULTS = [  # (line 2 of a file whose line 1 is GOOD, reason, message)
    (b"{oops", "malformed_json", "malformed JSON (Expecting property name enclosed in double quotes at column 2)"),
    (b"[1, 2]", "malformed_json", "expected a JSON object, got list"),
    (b'{"a": ' + b"[" * 2000 + b"]" * 2000 + b"}", "malformed_json", "malformed JSON (nested too deeply)"),
    (b'{"instruction": "caf\xe9"}', "undecodable", "not valid UTF-8 (invalid continuation byte at byte 21 of the line)"),
    (b'{"instruction": "bad \\ud800", "output": "x", "text": "y"}', "undecodable",
     "a string holds an unpaired UTF-16 surrogate escape (not valid text)"),
    (b'{"id": 7}', "missing_field", None),  # the keys named depend on what the caller requires
    (b'{"instruction": "' + b"x" * 5000 + b'"}', "line_too_long", "line longer than 4096 bytes"),
]


@pytest.fixture
def small_lines(monkeypatch):
    monkeypatch.setattr(readers, "MAX_LINE_BYTES", 4096)


@pytest.mark.parametrize("line,reason,message", FAULTS, ids=[f[1] + str(i) for i, f in enumerate(FAULTS)])
def test_a_fault_is_a_record_strict_raises_it_tolerant_keeps_it(tmp_path, small_lines, line, reason, message):
    path = write(tmp_path / "f.jsonl", lines(GOOD, line, GOOD))
    got = list(iter_records(path, ["instruction"]))
    assert [r.label for r in got] == ["line 1", "line 2", "line 3"]  # reading goes on past the fault
    bad = got[1]
    assert bad.fault.reason == reason and got[0].fault is None and got[2].data == GOOD
    message = message or "missing key(s) instruction; has: id"
    assert bad.fault.message == message
    assert bad.data == ({"id": 7} if reason == "missing_field" else None)  # a missing key leaves an object to name
    with pytest.raises(InputError) as e:
        bad.strict()
    assert str(e.value) == f"{path}, record line 2: {message}"


def test_a_required_key_missing_from_the_first_object_is_a_source_fault(tmp_path):
    path = write(tmp_path / "f.jsonl", lines(b"{oops", {"body": "x"}, GOOD))
    it = iter_records(path, ["text"], hint="set text_column")
    assert next(it).fault.reason == "malformed_json"
    with pytest.raises(InputError, match=r"f\.jsonl, record line 2: missing key\(s\) text; has: body; set text_column$"):
        next(it)


def test_an_over_long_line_is_skipped_in_pieces(tmp_path):
    # a 5 MB line behind a 1 KiB cap is rejected, and the next line is read with its own number
    path = write(tmp_path / "big.jsonl.gz", gzip.compress(lines({"a": "x" * 5_000_000}, {"a": 1})))
    got = list(iter_records(path, max_line_bytes=1024))
    assert [(r.label, r.fault and r.fault.reason, r.data) for r in got] == [("line 1", "line_too_long", None),
                                                                          ("line 2", None, {"a": 1})]
    # the cap counts the line's bytes without its newline: exactly at the cap is fine
    exact = write(tmp_path / "exact.jsonl", b'{"a": "' + b"x" * 1015 + b'"}\n')
    assert next(iter_records(exact, max_line_bytes=1024)).fault is None
    assert next(iter_records(exact, max_line_bytes=1023)).fault.reason == "line_too_long"
    last = write(tmp_path / "last.jsonl", exact.read_bytes().rstrip(b"\n"))  # a last line without its newline
    assert next(iter_records(last, max_line_bytes=1024)).fault is None


def test_empty_file_is_a_source_fault_unless_allowed(tmp_path):
    path = write(tmp_path / "blank.jsonl", b"\n \n")
    with pytest.raises(InputError, match=r"blank\.jsonl: no records$"):
        list(iter_records(path))
    assert list(iter_records(path, allow_empty=True)) == []
    # a file of faulty lines is not empty: a tolerant caller counts them
    assert [r.fault.reason for r in iter_records(write(tmp_path / "bad.jsonl", b"{\n[]\n"))] == ["malformed_json"] * 2


# ---------------------------------------------------------------- file discovery

def test_find_files_sorted_recursive_suffix_checked_hidden_skipped(tmp_path):
    for name in ["b.jsonl", "a/c.parquet", "a/d.JSONL.GZ", "notes.txt", ".hidden.jsonl", ".cache/e.jsonl", "a/.f.jsonl"]:
        write(tmp_path / "d" / name, b"")
    assert [p.relative_to(tmp_path / "d").as_posix() for p in find_files(tmp_path / "d")] == [
        "a/c.parquet", "a/d.JSONL.GZ", "b.jsonl"]
    assert find_files(tmp_path / "d" / ".hidden.jsonl") == [tmp_path / "d" / ".hidden.jsonl"]  # named: read
    with pytest.raises(InputError, match=r"nowhere: file not found$"):
        find_files(tmp_path / "nowhere")
    with pytest.raises(InputError, match=r"notes\.txt: unsupported file type \(expected \.jsonl, .* or \.parquet\)$"):
        find_files(tmp_path / "d" / "notes.txt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match=r"empty: directory has no \.html, \.htm or \.xhtml files$"):
        find_files(tmp_path / "empty", (".html", ".htm", ".xhtml"))


def _seed(path):  # the seed readers take their bound from params: here the reader's (patched) one
    return build_seed(SeedConfig(sources=[SeedSource(path=str(path))], max_record_bytes=readers.MAX_LINE_BYTES))


def _corpus(path):
    return list(iter_source(SourceConfig(kind="table", path=str(path))))


def _error(fn, *args) -> str:
    with pytest.raises(InputError) as e:
        fn(*args)
    return str(e.value)


STRICT_CALLERS = {"seed": _seed, "eval prompts": load_prompts, "training": lambda p: read_pairs(p, "pairs"),
                  "read_table": lambda p: read_table(p, ["instruction"])}


@pytest.mark.parametrize("caller", [*STRICT_CALLERS, "corpus"])
def test_file_faults_have_one_wording_for_every_caller(tmp_path, caller):
    fn = STRICT_CALLERS.get(caller, _corpus)
    assert _error(fn, tmp_path / "nope.jsonl").startswith(f"{tmp_path / 'nope.jsonl'}: file not found")
    assert _error(fn, write(tmp_path / "x.csv", b"a\n")).startswith(f"{tmp_path / 'x.csv'}: unsupported file type (expected")
    if caller != "training":  # an empty table is a result there (EmptyResultError), not an input fault
        assert _error(fn, write(tmp_path / "e.jsonl", b"\n")) == f"{tmp_path / 'e.jsonl'}: no records"
    cut = write(tmp_path / "t.jsonl.gz", gzip.compress(lines(*[GOOD] * 500))[:-30])
    assert _error(fn, cut).startswith(f"{cut}, record line ") and ": cannot read (EOFError" in _error(fn, cut)
    assert _error(fn, write(tmp_path / "j.parquet", b"junk")).startswith(f"{tmp_path / 'j.parquet'}: not a readable Parquet file")


@pytest.mark.parametrize("line,reason,message", FAULTS, ids=[f[1] + str(i) for i, f in enumerate(FAULTS)])
def test_a_record_fault_has_one_wording_for_every_caller(tmp_path, small_lines, line, reason, message):
    path = write(tmp_path / "f.jsonl", lines(GOOD, line, GOOD))
    for caller, fn in STRICT_CALLERS.items():
        msg = _error(fn, path)
        assert msg.startswith(f"{path}, record line 2: "), (caller, msg)
        if message:
            assert msg == f"{path}, record line 2: {message}", caller
        else:
            assert msg.startswith(f"{path}, record line 2: missing key(s) ") and msg.endswith("; has: id"), (caller, msg)
    got = _corpus(path)  # tolerant: the fault is a rejected document with the reason and the same message
    assert [type(d) for d in got] == [Document, DocReject, Document]
    want = message or "missing key(s) text; has: id"
    assert got[1].reason == ("missing_text" if reason == "missing_field" else reason)
    assert got[1].detail == f"line 2: {want}"
    assert got[1].doc_id == ("7" if reason == "missing_field" else "f.jsonl:2")


def test_a_record_fault_in_parquet_and_a_wrong_type_read_alike(tmp_path):
    path = tmp_path / "p.parquet"
    pl.DataFrame({"instruction": ["q", None], "output": ["a", "b"], "text": ["t", None]}).write_parquet(path)
    assert _error(load_prompts, path) == f"{path}, record row 1: 'instruction' must be a string, got NoneType: None"
    (reject,) = [d for d in _corpus(path) if isinstance(d, DocReject)]
    assert (reject.reason, reject.detail, reject.doc_id) == ("missing_text", "row 1: 'text' must be a string, got NoneType: None",
                                                             "p.parquet:1")


def test_record_strict_returns_the_object():
    assert Record(path=None, label="line 1", number=1, data={"a": 1}).strict() == {"a": 1}
