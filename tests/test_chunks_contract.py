"""The chunked runner's fingerprint, settings record and model identity, value by value: what each
covers, what it leaves out, and what it says when it cannot tell."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import polars as pl
import pytest
from test_io_chunks import _double

from humpback import chunks
from humpback.chunks import fingerprint, model_identity, process_in_chunks, record, row_digest
from humpback.engines.config import EngineConfig
from humpback.errors import ConfigError, InputError
from humpback.models import META

ENGINE = EngineConfig(backend="transformers", device="cpu", dtype="float32")


def test_the_fingerprint_is_the_digest_of_its_record():
    df = pl.DataFrame({"x": [1, 2, 3]})
    settings = {"b": 1, "a": [Path("m"), 2.5]}
    want = {"format": chunks.FORMAT, "chunking": {"chunk_size": 2, "rows": 3}, "rows": row_digest(df),
            "settings": {"b": 1, "a": ["m", 2.5]}}
    assert fingerprint(df, settings, chunk_size=2) == hashlib.sha256(
        json.dumps(want, sort_keys=True).encode()).hexdigest()
    assert fingerprint(df, {"a": [Path("m"), 2.5], "b": 1}, chunk_size=2) == fingerprint(df, settings, chunk_size=2)
    assert fingerprint(df, {"a": [Path("n"), 2.5], "b": 1}, chunk_size=2) != fingerprint(df, settings, chunk_size=2)
    assert chunks.FORMAT == 2


def test_settings_that_are_not_plain_data_are_refused():
    assert chunks._json_default(Path("a/b")) == "a/b"
    with pytest.raises(TypeError, match=r"^fingerprint settings: set is not plain data: \{3\}$"):
        chunks._json_default({3})
    with pytest.raises(TypeError, match="fingerprint settings: object is not plain data"):
        fingerprint(pl.DataFrame({"x": [1]}), {"k": object()}, chunk_size=1)


def test_the_row_digest_covers_values_schema_and_every_slice():
    df = pl.DataFrame({"x": list(range(25_000))})
    assert row_digest(df) == row_digest(pl.DataFrame({"x": list(range(25_000))}))
    late = df.with_columns(pl.when(pl.col("x") == 24_999).then(-1).otherwise(pl.col("x")).alias("x"))
    assert row_digest(late) != row_digest(df)  # a change in the last slice counts
    assert row_digest(df.rename({"x": "y"})) != row_digest(df)
    h = hashlib.sha256(repr([("x", "Int64")]).encode())
    small = pl.DataFrame({"x": [1, 2]})
    h.update(small.write_ndjson().encode())
    assert row_digest(small) == h.hexdigest()


@dataclasses.dataclass
class Leaf:
    a: int = 1
    b: str = "x"


@dataclasses.dataclass
class Tree:
    leaf: Leaf = dataclasses.field(default_factory=Leaf)
    c: float = 0.5
    kind: type = Leaf  # a dataclass class as a value is recorded as it is, not walked


def test_record_walks_dataclasses_and_skips_dotted_paths_and_below():
    assert record({"t": Tree()}, set()) == {"t": {"leaf": {"a": 1, "b": "x"}, "c": 0.5, "kind": Leaf}}
    assert record({"t": Tree()}, {"t.leaf.b": "why"}) == {"t": {"leaf": {"a": 1}, "c": 0.5, "kind": Leaf}}
    assert record({"t": Tree()}, {"t.leaf", "t.c"}) == {"t": {"kind": Leaf}}
    assert record({"t": Tree(), "n": 3}, {"leaf"}) == {"t": {"leaf": {"a": 1, "b": "x"}, "c": 0.5, "kind": Leaf}, "n": 3}


def test_engine_settings_leave_out_only_the_allow_list_and_add_the_machine():
    got = chunks.engine_settings(ENGINE)
    assert set(got) == {"engine", "machine"}
    assert set(got["machine"]) == {"cuda", "vllm", "cpu_bf16"} and all(isinstance(v, bool) for v in got["machine"].values())
    assert got["machine"] == chunks._machine()
    openai = got["engine"]["openai"]
    assert "base_url" in openai and "model" in openai and "api" in openai
    assert not {"api_key_env", "timeout", "max_retries", "backoff", "concurrency"} & set(openai)
    assert got["engine"]["backend"] == "transformers" and got["engine"]["dtype"] == "float32"
    assert all(len(reason) > 20 for reason in chunks.ENGINE_UNRECORDED.values())


def _model(d: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        (d / name).parent.mkdir(parents=True, exist_ok=True)
        (d / name).write_bytes(data)
    return d


def test_the_content_digest_is_of_relative_paths_and_bytes(tmp_path):
    a = _model(tmp_path / "a", {"config.json": b"{}", "sub/w.bin": b"w" * 3_000_000})
    want = hashlib.sha256()
    for rel, data in (("config.json", b"{}"), ("sub/w.bin", b"w" * 3_000_000)):
        want.update(f"{rel}\0{hashlib.sha256(data).hexdigest()}\n".encode())
    assert chunks._content_digest(a) == want.hexdigest()
    (a / META).write_text('{"kind": "checkpoint"}')  # its meaning is recorded apart
    assert chunks._content_digest(a) == want.hexdigest()
    b = _model(tmp_path / "b", {"config.json": b"{}", "w.bin": b"w" * 3_000_000})  # same bytes, other path
    assert chunks._content_digest(b) != want.hexdigest()
    c = _model(tmp_path / "c", {"config.json": b"{}", "sub/w.bin": b"w" * 2_999_999 + b"x"})  # past the first MiB
    assert chunks._content_digest(c) != want.hexdigest()


def test_the_content_digest_orders_files_by_their_relative_path_as_text(tmp_path):
    # "a-c" sorts before "a/b" as text ("-" < "/") but after it as path parts ("a" < "a-c"): the
    # digest is of the text order, the same on every platform and Python version
    files = {"a/b": b"1", "a-c": b"2", "B": b"3"}
    d = _model(tmp_path / "m", files)
    want = hashlib.sha256()
    for rel in sorted(files):
        want.update(f"{rel}\0{hashlib.sha256(files[rel]).hexdigest()}\n".encode())
    assert sorted(files) == ["B", "a-c", "a/b"] and sorted(Path(r) for r in files) != [Path(r) for r in sorted(files)]
    assert chunks._content_digest(d) == want.hexdigest()


def test_identities_of_a_checkpoint_an_adapter_and_their_faults(tmp_path):
    base = _model(tmp_path / "base", {"config.json": b"{}", "w.bin": b"1"})
    assert model_identity(base, ENGINE) == {"local": {"checkpoint": chunks._content_digest(base)}}
    with pytest.raises(InputError, match=r"missing: model directory not found \(has its stage run\?\)"):
        model_identity(tmp_path / "missing", ENGINE)
    adapter = _model(tmp_path / "lora", {"adapter_config.json": b"{}", "adapter.bin": b"2"})
    with pytest.raises(InputError, match=f"lora: LoRA adapter without {META} naming its base"):
        model_identity(adapter, ENGINE)
    (adapter / META).write_text(json.dumps({"kind": "adapter", "base": str(base)}))
    assert model_identity(adapter, ENGINE) == {"local": {
        "adapter": chunks._content_digest(adapter), "base": {"checkpoint": chunks._content_digest(base)}}}
    (adapter / META).write_text(json.dumps({"kind": "adapter", "base": "org/base-1b"}))
    assert model_identity(adapter, ENGINE)["local"]["base"] == {"hub": "org/base-1b"}
    loop = tmp_path / "loop"
    loop.mkdir()
    (loop / META).write_text(json.dumps({"kind": "pointer", "base": str(loop)}))
    with pytest.raises(InputError, match="cycle"):
        model_identity(loop, ENGINE)
    with pytest.raises(ConfigError, match="^model_identity: no model directory and no endpoint$"):
        model_identity(None, ENGINE)


def test_an_endpoint_is_named_by_its_address_without_credentials(tmp_path):
    def served(url: str, model: str = "") -> EngineConfig:
        return dataclasses.replace(ENGINE, backend="openai",
                                   openai=dataclasses.replace(ENGINE.openai, base_url=url, model=model))

    assert model_identity(None, served("http://u:secret@h:8000/v1/", "m")) == {
        "endpoint": {"base_url": "http://***@h:8000/v1", "model": "m"}}
    d = _model(tmp_path / "it1", {"config.json": b"{}"})
    # no served name: the model directory's name; the directory, where it exists, by content too
    assert model_identity(d, served("http://h/v1")) == {
        "endpoint": {"base_url": "http://h/v1", "model": "it1"}, "local": {"checkpoint": chunks._content_digest(d)}}
    assert model_identity(tmp_path / "gone", served("http://h/v1")) == {
        "endpoint": {"base_url": "http://h/v1", "model": "gone"}}
    assert model_identity(None, served("http://h/v1")) == {"endpoint": {"base_url": "http://h/v1", "model": ""}}
    # only trailing slashes are dropped: an address ending in another character is another endpoint
    assert model_identity(None, served("http://h/v1//"))["endpoint"]["base_url"] == "http://h/v1"
    assert model_identity(None, served("http://h/X"))["endpoint"]["base_url"] == "http://h/X"


def test_the_runner_cuts_stamps_and_cleans_up(tmp_path):
    out = tmp_path / "out.parquet"
    seen = []
    res = process_in_chunks(pl.DataFrame({"x": list(range(7))}), out,
                            lambda c, i: seen.append((i, c.height)) or _double(c, i), chunk_size=3)
    assert seen == [(0, 3), (1, 3), (2, 1)] and res["chunk"].to_list() == [0, 0, 0, 1, 1, 1, 2]
    assert pl.read_parquet(out).equals(res) and not (tmp_path / "out.parquet.parts").exists()
    seen.clear()
    empty = process_in_chunks(pl.DataFrame({"x": []}, schema={"x": pl.Int64}), tmp_path / "e.parquet",
                              lambda c, i: seen.append((i, c.height)) or _double(c, i), chunk_size=3)
    assert seen == [(0, 0)] and empty.height == 0  # one (empty) chunk: the output still has its columns
    assert "y" in pl.read_parquet(tmp_path / "e.parquet").columns
    for bad in (0, -1):
        with pytest.raises(ConfigError, match=f"^chunk_size: must be at least 1, got {bad}$"):
            process_in_chunks(pl.DataFrame({"x": [1]}), out, _double, chunk_size=bad)
    assert process_in_chunks(pl.DataFrame({"x": [1, 2]}), out, _double, chunk_size=1)["chunk"].to_list() == [0, 1]


def test_parts_of_the_same_inputs_are_kept_and_a_missing_stamp_discards_them(tmp_path):
    df = pl.DataFrame({"x": [1, 2, 3, 4]})
    out = tmp_path / "out.parquet"
    parts = tmp_path / "out.parquet.parts"
    parts.mkdir()
    fp = fingerprint(df, {"s": 1}, chunk_size=2)
    (parts / "FINGERPRINT").write_text(fp + "\n")  # the stamp as written, surrounding space and all
    marked = _double(df.slice(0, 2), 0).with_columns(pl.lit(-1).alias("chunk"))
    marked.write_parquet(parts / "part-00000.parquet")
    res = process_in_chunks(df, out, _double, chunk_size=2, settings={"s": 1})
    assert res["chunk"].to_list() == [-1, -1, 1, 1]  # the finished part was reused
    parts.mkdir()
    marked.write_parquet(parts / "part-00000.parquet")  # parts without a stamp: not trusted
    res = process_in_chunks(df, out, _double, chunk_size=2, settings={"s": 1})
    assert res["chunk"].to_list() == [0, 0, 1, 1]


def test_the_machine_facts_follow_what_is_installed(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "vllm" else real(name, *a))
    assert chunks._machine()["vllm"] is True
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "vllm" else real(name, *a))
    assert chunks._machine()["vllm"] is False


def test_an_adapter_over_a_pointer_back_to_itself_is_a_named_cycle(tmp_path):
    adapter = _model(tmp_path / "lora", {"adapter_config.json": b"{}", "adapter.bin": b"2"})
    pointer = tmp_path / "ptr"
    pointer.mkdir()
    (adapter / META).write_text(json.dumps({"kind": "adapter", "base": str(pointer)}))
    (pointer / META).write_text(json.dumps({"kind": "pointer", "base": str(adapter)}))
    with pytest.raises(InputError, match=f"cycle: {adapter} -> {pointer} -> {adapter}"):
        model_identity(adapter, ENGINE)


def test_the_progress_bar_counts_chunks_and_resumes_where_it_stopped(tmp_path, capsys):
    df = pl.DataFrame({"x": list(range(7))})
    process_in_chunks(df, tmp_path / "a.parquet", _double, chunk_size=3, desc="scoring")
    err = capsys.readouterr().err
    assert "scoring: 100%" in err and " 3/3 " in err and ("chunk/s" in err or "s/chunk" in err)
    assert " 4/3 " not in err and " 6/3 " not in err
    process_in_chunks(df, tmp_path / "b.parquet", _double, chunk_size=3)
    assert "chunks: 100%" in capsys.readouterr().err

    def crash(chunk, i):
        if i == 2:
            raise KeyboardInterrupt
        return _double(chunk, i)

    with pytest.raises(KeyboardInterrupt):
        process_in_chunks(df, tmp_path / "c.parquet", crash, chunk_size=3, desc="scoring")
    capsys.readouterr()
    process_in_chunks(df, tmp_path / "c.parquet", _double, chunk_size=3, desc="scoring")
    final = capsys.readouterr().err.replace("\r", "\n").strip().splitlines()[-1]
    assert final.startswith("scoring: 100%") and " 3/3 " in final  # started at 2 of 3, not at 0
