"""Seed stage: every source kind, the oasst selection rules, dedup, sampling, bad input and the stage script."""

from __future__ import annotations

import gzip
import json
import subprocess
from pathlib import Path

import dvc_stage
import polars as pl
import pytest

from humpback.errors import EmptyResultError, InputError
from humpback.seed import SeedConfig, SeedSource, build_seed
from humpback.seed.oasst import detect_layout

REPO = Path(__file__).resolve().parents[1]


def msg(mid, parent, role, text, lang="en", rank=None, deleted=False, tree="t"):
    return {"message_id": mid, "parent_id": parent, "role": role, "text": text, "lang": lang, "rank": rank,
            "deleted": deleted, "message_tree_id": tree, "review_result": True, "emojis": {"+1": 2}}


def oasst_messages() -> list[dict]:
    """Seven trees, each probing one rule; exactly (p1, a1) and (p8, a10) are seed pairs."""
    return [
        msg("p1", None, "prompter", "Root one?", tree="t1"),
        msg("a1", "p1", "assistant", "Best answer one.", rank=0, tree="t1"),
        msg("a2", "p1", "assistant", "Second answer one.", rank=1, tree="t1"),
        msg("a3", "p1", "assistant", "Unranked answer one.", rank=None, tree="t1"),
        msg("p2", "a1", "prompter", "Follow-up question?", tree="t1"),
        msg("a4", "p2", "assistant", "Later-turn answer.", rank=0, tree="t1"),
        msg("p3", None, "prompter", "Wie geht es?", lang="de", tree="t2"),
        msg("a5", "p3", "assistant", "Gut, danke.", lang="de", rank=0, tree="t2"),
        msg("p4", None, "prompter", "Deleted root?", deleted=True, tree="t3"),
        msg("a6", "p4", "assistant", "Answer to a deleted root.", rank=0, tree="t3"),
        msg("p5", None, "prompter", "Root five?", tree="t4"),
        msg("a7", "p5", "assistant", "Deleted best answer.", rank=0, deleted=True, tree="t4"),
        msg("a8", "p5", "assistant", "Runner-up answer.", rank=1, tree="t4"),
        msg("p6", None, "prompter", "Root six?", tree="t5"),
        msg("a9", "p6", "assistant", "Respuesta en castellano.", lang="es", rank=0, tree="t5"),
        msg("p7", None, "prompter", "Root with no reply?", tree="t6"),
        msg("p8", None, "prompter", "Root eight?", tree="t7"),
        msg("a10", "p8", "assistant", "Best answer eight.", rank=0, tree="t7"),
    ]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wt", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    return path


def to_trees(messages: list[dict]) -> list[dict]:
    """The trees layout: one line per tree, nested replies, null fields left out as the export does."""
    nodes = {m["message_id"]: {k: v for k, v in m.items() if v is not None} | {"replies": []} for m in messages}
    trees = []
    for m in messages:
        node = nodes[m["message_id"]]
        if m["parent_id"] is None:
            trees.append({"message_tree_id": m["message_tree_id"], "tree_state": "ready_for_export", "prompt": node})
        else:
            nodes[m["parent_id"]]["replies"].append(node)
    return trees


def run(tmp_path: Path, *sources: SeedSource, **kw) -> object:
    return build_seed(SeedConfig(sources=list(sources), **kw))


def pairs_of(result) -> set[tuple[str, str]]:
    return set(zip(result.kept["instruction"], result.kept["output"], strict=True))


EXPECTED_OASST = {("Root one?", "Best answer one."), ("Root eight?", "Best answer eight.")}


# --- source kinds -------------------------------------------------------------------------------

def test_bundled_default_source(monkeypatch):
    cfg = SeedConfig()
    assert [s.path for s in cfg.sources] == ["data/seed/seed.jsonl"]
    monkeypatch.chdir(REPO)
    res = build_seed(cfg)
    assert res.kept.height >= 150
    assert res.kept["source"].unique().to_list() == ["bundled"]
    assert res.kept["source_id"].str.contains("-").all()


def test_pairs_parquet_with_custom_columns_and_input(tmp_path):
    path = tmp_path / "alpaca.parquet"
    pl.DataFrame({
        "uid": [7, 8],
        "prompt": ["Translate to French", "Say hi"],
        "context": ["Good morning", None],
        "completion": [" Bonjour ", "Hi!"],
    }).write_parquet(path)
    src = SeedSource(path=str(path), instruction_column="prompt", output_column="completion",
                     input_column="context", id_column="uid", name="alpaca")
    res = run(tmp_path, src)
    assert res.kept.to_dicts() == [
        {"instruction": "Translate to French\n\nGood morning", "output": "Bonjour", "source": "alpaca", "source_id": "7"},
        {"instruction": "Say hi", "output": "Hi!", "source": "alpaca", "source_id": "8"},
    ]


def test_pairs_without_id_column_name_file_and_line(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [{"instruction": "a", "output": "b"}, {"instruction": "c", "output": "d"}])
    res = run(tmp_path, SeedSource(path=str(path)))
    assert res.kept["source_id"].to_list() == ["p.jsonl:line 1", "p.jsonl:line 2"]
    assert res.kept["source"].to_list() == [f"pairs:{path}"] * 2


@pytest.mark.parametrize("fmt", ["flat.jsonl", "flat.parquet", "trees.jsonl.gz", "messages.jsonl.gz"])
def test_oasst_layouts_select_the_same_pairs(tmp_path, fmt):
    messages = oasst_messages()
    path = tmp_path / f"oasst.{fmt}"
    if fmt == "flat.parquet":
        pl.DataFrame(messages).write_parquet(path)
    elif fmt.startswith("trees"):
        write_jsonl(path, to_trees(messages))
    else:
        write_jsonl(path, messages)
    res = run(tmp_path, SeedSource(path=str(path), kind="oasst", name="oasst1"))
    assert pairs_of(res) == EXPECTED_OASST
    assert sorted(res.kept["source_id"]) == ["p1/a1", "p8/a10"]
    src = res.metrics["sources"][0]
    assert src["read"] == len(messages)
    assert src["root_prompts"] == 7
    assert src["later_turn_messages"] == 2  # p2 and a4
    assert src["selected"] == 2
    assert src["rejected"] == {
        "no_reply": 1, "prompt_deleted": 1, "prompt_lang": 1, "reply_deleted": 1,
        "reply_lang": 1, "reply_not_rank_0": 2, "reply_unranked": 1,
    }
    assert res.metrics["kept"] == 2


def test_oasst_trees_detected_by_content(tmp_path):
    path = write_jsonl(tmp_path / "export.jsonl", to_trees(oasst_messages()))
    assert detect_layout(path) == "trees"
    assert detect_layout(write_jsonl(tmp_path / "flat.jsonl", oasst_messages())) == "flat"
    assert pairs_of(run(tmp_path, SeedSource(path=str(path), kind="oasst"))) == EXPECTED_OASST


def test_oasst_directory_with_flat_and_trees_counts_each_message_once(tmp_path):
    d = tmp_path / "oasst1"
    d.mkdir()
    write_jsonl(d / "x.messages.jsonl.gz", oasst_messages())
    write_jsonl(d / "x.trees.jsonl.gz", to_trees(oasst_messages()))
    (d / "README.md").write_text("not data")
    res = run(tmp_path, SeedSource(path=str(d), kind="oasst"))
    assert res.kept.height == 2
    assert res.metrics["sources"][0]["duplicate_message_id"] == len(oasst_messages())


# --- oasst rules --------------------------------------------------------------------------------

def oasst_one(tmp_path, messages, **kw):
    path = write_jsonl(tmp_path / "m.jsonl", messages)
    return build_seed(SeedConfig(sources=[SeedSource(path=str(path), kind="oasst")], **kw))


def test_rank_zero_reply_of_root_is_selected(tmp_path):
    res = oasst_one(tmp_path, [msg("p", None, "prompter", "Q"), msg("b", "p", "assistant", "B", rank=1),
                               msg("a", "p", "assistant", "A", rank=0)])
    assert pairs_of(res) == {("Q", "A")}
    assert res.rejected.select("source_id", "reason").to_dicts() == [{"source_id": "p/b", "reason": "reply_not_rank_0"}]


def test_unranked_reply_is_never_selected(tmp_path):
    with pytest.raises(EmptyResultError, match="reply_unranked 1"):
        oasst_one(tmp_path, [msg("p", None, "prompter", "Q"), msg("a", "p", "assistant", "A", rank=None)])


def test_later_turn_is_never_selected_even_with_rank_zero(tmp_path):
    res = oasst_one(tmp_path, [
        msg("p", None, "prompter", "Q"), msg("a", "p", "assistant", "A", rank=0),
        msg("p2", "a", "prompter", "Q2"), msg("a2", "p2", "assistant", "A2", rank=0),
    ])
    assert pairs_of(res) == {("Q", "A")}
    assert res.metrics["sources"][0]["later_turn_messages"] == 2


def test_prompter_reply_with_no_parent_in_data_is_not_a_root(tmp_path):
    # a prompter message whose parent is missing from the file is a later turn, not a root
    res = oasst_one(tmp_path, [
        msg("p", None, "prompter", "Q"), msg("a", "p", "assistant", "A", rank=0),
        msg("p2", "gone", "prompter", "Q2"), msg("a2", "p2", "assistant", "A2", rank=0),
    ])
    assert pairs_of(res) == {("Q", "A")}


@pytest.mark.parametrize(("prompt", "reply", "reason"), [
    ({"deleted": True}, {}, "prompt_deleted"),
    ({"lang": "fr"}, {}, "prompt_lang"),
    ({"lang": None}, {}, "prompt_lang"),
    ({}, {"deleted": True}, "reply_deleted"),
    ({}, {"lang": "fr"}, "reply_lang"),
])
def test_deleted_or_other_language_is_rejected(tmp_path, prompt, reply, reason):
    good = [msg("g", None, "prompter", "Good Q"), msg("ga", "g", "assistant", "Good A", rank=0)]
    bad = [msg("p", None, "prompter", "Q") | prompt, msg("a", "p", "assistant", "A", rank=0) | reply]
    res = oasst_one(tmp_path, good + bad)
    assert pairs_of(res) == {("Good Q", "Good A")}
    assert res.rejected.filter(pl.col("source_id") == "p/a")["reason"].to_list() == [reason]


def test_lang_setting_and_empty_lang_means_any(tmp_path):
    messages = oasst_messages()
    assert pairs_of(oasst_one(tmp_path, messages, lang="de")) == {("Wie geht es?", "Gut, danke.")}
    anylang = oasst_one(tmp_path, messages, lang="")
    assert ("Wie geht es?", "Gut, danke.") in pairs_of(anylang)
    assert ("Root six?", "Respuesta en castellano.") in pairs_of(anylang)


def test_rank_as_float_with_nan_in_parquet(tmp_path):
    path = tmp_path / "m.parquet"
    pl.DataFrame({
        "message_id": ["p", "a", "b"], "parent_id": [None, "p", "p"], "role": ["prompter", "assistant", "assistant"],
        "text": ["Q", "A", "B"], "lang": ["en"] * 3, "rank": [float("nan"), 0.0, float("nan")], "deleted": [False] * 3,
    }).write_parquet(path)
    res = run(tmp_path, SeedSource(path=str(path), kind="oasst"))
    assert pairs_of(res) == {("Q", "A")}
    assert res.rejected["reason"].to_list() == ["reply_unranked"]


# --- dedup, filters and sampling ----------------------------------------------------------------

def test_exact_dedup_across_sources_keeps_first(tmp_path):
    a = write_jsonl(tmp_path / "a.jsonl", [{"instruction": "Q", "output": "A"}, {"instruction": "Q ", "output": " A"},
                                           {"instruction": "Q", "output": "A."}])
    b = write_jsonl(tmp_path / "b.jsonl", [{"instruction": "Q", "output": "A"}, {"instruction": "q", "output": "A"}])
    res = run(tmp_path, SeedSource(path=str(a), name="a"), SeedSource(path=str(b), name="b"))
    assert res.kept.select("source", "instruction", "output").rows() == [("a", "Q", "A"), ("a", "Q", "A."), ("b", "q", "A")]
    assert res.rejected.select("source", "reason").rows() == [("a", "duplicate"), ("b", "duplicate")]
    assert res.metrics["rejected"] == {"duplicate": 2}
    assert res.metrics["kept"] == 3


def test_empty_and_length_filters_are_kept_with_reason(tmp_path):
    rows = [{"instruction": "", "output": "x" * 10}, {"instruction": "Q" * 10, "output": "   "},
            {"instruction": "Q" * 10, "output": None}, {"instruction": "Q" * 10, "output": "short"},
            {"instruction": "Q" * 10, "output": "y" * 50}, {"instruction": "Q" * 10, "output": "fine answer"}]
    res = run(tmp_path, SeedSource(path=str(write_jsonl(tmp_path / "p.jsonl", rows))), min_chars=8, max_chars=40)
    assert res.kept["output"].to_list() == ["fine answer"]
    assert res.rejected["reason"].to_list() == ["empty_instruction", "empty_output", "empty_output",
                                                "short_output", "long_output"]


def many_roots(n: int) -> list[dict]:
    out = []
    for i in range(n):
        out += [msg(f"p{i}", None, "prompter", f"Question {i}?"), msg(f"a{i}", f"p{i}", "assistant", f"Answer {i}.", rank=0)]
    return out


def test_max_examples_is_deterministic_and_independent_of_file_order(tmp_path):
    messages = many_roots(60)
    flat = write_jsonl(tmp_path / "f.jsonl", messages)
    shuffled = write_jsonl(tmp_path / "s.jsonl", messages[::-1])
    trees = write_jsonl(tmp_path / "t.trees.jsonl.gz", to_trees(messages))

    def ids(path, cap=10, seed=0):
        res = build_seed(SeedConfig(sources=[SeedSource(path=str(path), kind="oasst")], max_examples=cap, seed=seed))
        return set(res.kept["source_id"]), res

    first, res = ids(flat)
    assert len(first) == 10
    assert res.metrics["sources"][0]["rejected"] == {"over_max_examples": 50}
    assert ids(flat)[0] == first
    assert ids(shuffled)[0] == first
    assert ids(trees)[0] == first
    assert ids(flat, seed=1)[0] != first
    assert ids(flat, cap=20)[0] > first  # a larger cap keeps a superset
    assert len(ids(flat, cap=0)[0]) == 60


def test_per_source_max_examples_override(tmp_path):
    a = write_jsonl(tmp_path / "a.jsonl", [{"instruction": f"q{i}", "output": "o"} for i in range(5)])
    b = write_jsonl(tmp_path / "b.jsonl", [{"instruction": f"r{i}", "output": "o"} for i in range(5)])
    res = run(tmp_path, SeedSource(path=str(a), name="a", max_examples=2), SeedSource(path=str(b), name="b"),
              max_examples=3)
    assert res.kept.group_by("source").len().sort("source").rows() == [("a", 2), ("b", 3)]


# --- bad input ----------------------------------------------------------------------------------

def bad(tmp_path, name: str, content: bytes | None, kind="pairs") -> InputError:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(InputError) as e:
        run(tmp_path, SeedSource(path=str(path), kind=kind))
    assert str(path) in str(e.value)
    return e.value


@pytest.mark.parametrize("kind", ["pairs", "oasst"])
def test_malformed_json_names_the_line(tmp_path, kind):
    good = json.dumps(msg("p", None, "prompter", "Q") | {"instruction": "Q", "output": "A"})
    err = bad(tmp_path, "x.jsonl", f"{good}\n{{not json\n".encode(), kind)
    assert err.record == "line 2" and "malformed JSON" in str(err)


def test_missing_column_pairs_jsonl(tmp_path):
    err = bad(tmp_path, "x.jsonl", b'{"instruction": "Q", "output": "A"}\n{"instruction": "Q2"}\n')
    assert err.record == "line 2" and "output" in str(err)


def test_missing_column_parquet(tmp_path):
    path = tmp_path / "x.parquet"
    pl.DataFrame({"prompt": ["Q"], "output": ["A"]}).write_parquet(path)
    with pytest.raises(InputError, match="missing column.*instruction"):
        run(tmp_path, SeedSource(path=str(path)))
    path2 = tmp_path / "m.parquet"
    pl.DataFrame([msg("p", None, "prompter", "Q")]).drop("rank").write_parquet(path2)
    with pytest.raises(InputError, match="missing column.*rank"):
        run(tmp_path, SeedSource(path=str(path2), kind="oasst"))


def test_oasst_bad_role_and_rank(tmp_path):
    err = bad(tmp_path, "m.jsonl", (json.dumps(msg("p", None, "user", "Q")) + "\n").encode(), "oasst")
    assert "role" in str(err) and err.record == "line 1"
    err = bad(tmp_path, "n.jsonl", (json.dumps(msg("p", None, "prompter", "Q", rank="first")) + "\n").encode(), "oasst")
    assert "rank" in str(err)


def test_non_string_text_is_an_error(tmp_path):
    err = bad(tmp_path, "x.jsonl", b'{"instruction": ["Q"], "output": "A"}\n')
    assert "instruction" in str(err) and err.record == "line 1"


@pytest.mark.parametrize("kind", ["pairs", "oasst"])
def test_empty_source(tmp_path, kind):
    assert "no " in str(bad(tmp_path, "x.jsonl", b"\n\n", kind))


def test_non_utf8_file(tmp_path):
    assert "UTF-8" in str(bad(tmp_path, "x.jsonl", '{"instruction": "caf\xe9", "output": "A"}\n'.encode("latin-1")))


def test_truncated_gzip(tmp_path):
    blob = gzip.compress(b"".join(json.dumps(m).encode() + b"\n" for m in oasst_messages() * 20))
    assert "cannot read" in str(bad(tmp_path, "x.messages.jsonl.gz", blob[: len(blob) // 2], "oasst"))


def test_corrupt_parquet(tmp_path):
    assert "Parquet" in str(bad(tmp_path, "x.parquet", b"PAR1 not really"))


def test_path_that_does_not_exist(tmp_path):
    assert "not found" in str(bad(tmp_path, "nope.jsonl", None))


def test_directory_without_files(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("x")
    assert "no .jsonl" in str(bad(tmp_path, "empty", None))


def test_unsupported_extension(tmp_path):
    assert "unsupported" in str(bad(tmp_path, "x.csv", b"instruction,output\n"))


def test_nothing_kept_names_the_sources(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [{"instruction": "Q", "output": ""}])
    with pytest.raises(EmptyResultError, match=r"seed-one \(1 candidates, rejected: empty_output 1\)"):
        run(tmp_path, SeedSource(path=str(path), name="seed-one"))


# --- the stage script ---------------------------------------------------------------------------

def stage(tmp_path: Path, params: str) -> subprocess.CompletedProcess:
    (tmp_path / "params.yaml").write_text(params)
    return dvc_stage.run_subprocess("seed", cwd=tmp_path, timeout=120)


def test_stage_writes_outputs(tmp_path):
    write_jsonl(tmp_path / "oasst.jsonl", oasst_messages())
    (tmp_path / "data" / "seed").mkdir(parents=True)
    (tmp_path / "data" / "seed" / "seed.jsonl").write_bytes((REPO / "data" / "seed" / "seed.jsonl").read_bytes())
    proc = stage(tmp_path, "seed:\n  sources:\n"
                           "    - {path: data/seed/seed.jsonl, name: bundled, id_column: id}\n"
                           "    - {path: oasst.jsonl, kind: oasst, name: oasst1}\n")
    assert proc.returncode == 0, proc.stderr
    kept = pl.read_parquet(tmp_path / "data" / "prepared" / "seed.parquet")
    rejected = pl.read_parquet(tmp_path / "data" / "prepared" / "seed_rejected.parquet")
    metrics = json.loads((tmp_path / "metrics" / "seed.json").read_text())
    assert {"instruction", "output", "source", "source_id"} <= set(kept.columns)
    heldout = pl.read_parquet(tmp_path / "data" / "prepared" / "heldout.parquet")
    assert kept.height == metrics["kept"] and heldout.height == metrics["heldout"] == 16  # the default
    assert metrics["selected"] == kept.height + heldout.height >= 152
    assert pl.concat([kept, heldout]).filter(pl.col("source") == "oasst1").height == 2
    assert rejected.height == sum(metrics["rejected"].values()) == 8
    assert kept.select("instruction", "output").is_duplicated().sum() == 0


def test_stage_bad_input_is_one_line_and_writes_nothing(tmp_path):
    (tmp_path / "bad.jsonl").write_text('{"instruction": "Q", "output": "A"}\n{oops\n')
    proc = stage(tmp_path, "seed:\n  sources:\n    - {path: bad.jsonl}\n")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: bad.jsonl, record line 2: malformed JSON (Expecting property name enclosed in double quotes at column 2)"
    )
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "data").exists() and not (tmp_path / "metrics").exists()


def test_stage_unknown_param_key(tmp_path):
    proc = stage(tmp_path, "seed:\n  sources:\n    - {path: x.jsonl, colour: red}\n")
    assert proc.returncode == 2 and "colour" in proc.stderr
