"""Atomic outputs, whole-file readers and the resumable chunk runner (record reading: test_readers.py)."""

import json

import polars as pl
import pytest

from humpback.chunks import process_in_chunks
from humpback.errors import InputError
from humpback.io import atomic_path, write_json
from humpback.readers import read_table


def test_atomic_path_keeps_previous_output_on_failure(tmp_path):
    out = tmp_path / "m.json"
    write_json({"v": 1}, out)
    with pytest.raises(RuntimeError), atomic_path(out) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert json.loads(out.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]  # no temp file left behind


def test_read_table_checks_columns_and_emptiness(tmp_path):
    p = tmp_path / "x.jsonl"
    p.write_text('{"a": 1}\n')
    with pytest.raises(InputError, match=r"x.jsonl, record line 1: missing key\(s\) b; has: a"):
        read_table(p, ["a", "b"])
    pl.DataFrame({"a": [1]}).write_parquet(tmp_path / "x.parquet")
    with pytest.raises(InputError, match=r"x.parquet: missing column\(s\) b; has: a"):
        read_table(tmp_path / "x.parquet", ["a", "b"])
    p.write_text("")
    with pytest.raises(InputError, match="no records"):
        read_table(p)
    txt = tmp_path / "x.txt"
    txt.write_text("x")
    with pytest.raises(InputError, match="unsupported file type"):
        read_table(txt)


def _double(chunk: pl.DataFrame, i: int) -> pl.DataFrame:
    return chunk.with_columns((pl.col("x") * 2).alias("y"), pl.lit(i).alias("chunk"))


def test_chunks_resume_after_crash_gives_same_output(tmp_path):
    df = pl.DataFrame({"x": list(range(10))})
    calls = []

    def crashing(chunk, i):
        calls.append(i)
        if i == 2:
            raise KeyboardInterrupt  # the stage is killed while working on the third chunk
        return _double(chunk, i)

    out = tmp_path / "out.parquet"
    with pytest.raises(KeyboardInterrupt):
        process_in_chunks(df, out, crashing, chunk_size=3)
    assert not out.exists()
    assert sorted(p.name for p in (tmp_path / "out.parquet.parts").glob("part-*")) == ["part-00000.parquet", "part-00001.parquet"]

    calls.clear()
    resumed = process_in_chunks(df, out, lambda c, i: calls.append(i) or _double(c, i), chunk_size=3)
    assert calls == [2, 3]  # finished chunks are not redone
    fresh = process_in_chunks(df, tmp_path / "fresh.parquet", _double, chunk_size=3)
    assert resumed.equals(fresh) and pl.read_parquet(out).equals(fresh)
    assert not (tmp_path / "out.parquet.parts").exists()


def test_chunks_discard_parts_of_other_inputs(tmp_path):
    out = tmp_path / "out.parquet"
    parts = tmp_path / "out.parquet.parts"
    parts.mkdir()
    (parts / "FINGERPRINT").write_text("stale")
    pl.DataFrame({"x": [99], "y": [0], "chunk": [0]}).write_parquet(parts / "part-00000.parquet")
    res = process_in_chunks(pl.DataFrame({"x": [1, 2]}), out, _double, chunk_size=5)
    assert res["y"].to_list() == [2, 4]


def test_atomic_path_removes_temp_files_of_a_killed_run(tmp_path):
    out = tmp_path / "out.parquet"
    (tmp_path / ".out.parquet.abc123.tmp").write_text("half")  # SIGKILL leaves these behind
    (tmp_path / ".other.parquet.abc123.tmp").write_text("not ours")
    write_json({"v": 2}, out)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.parquet.abc123.tmp", "out.parquet"]


def test_input_errors_are_one_line(tmp_path):
    err = InputError(tmp_path / "x.warc", "bad header\n  line two\n", 3)
    assert "\n" not in str(err) and str(err).endswith("x.warc, record 3: bad header line two")


def test_read_json_accepts_a_bom_and_names_faults(tmp_path):
    from humpback.readers import read_json

    p = tmp_path / "m.json"
    p.write_bytes(b'\xef\xbb\xbf{"a": 1}')
    assert read_json(p) == {"a": 1}
    p.write_text('{"a": ')
    with pytest.raises(InputError, match=r"m.json: malformed JSON"):
        read_json(p)
    p.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(InputError, match="nested too deeply"):
        read_json(p)
    with pytest.raises(InputError, match="nope.json: file not found .its stage has not run."):
        read_json(tmp_path / "nope.json", "file not found (its stage has not run)")
