"""Seed pairs that copy an eval prompt or its reference answer never reach training."""

from __future__ import annotations

import json
from pathlib import Path

import dvc_stage
import polars as pl
import pytest

from humpback.decontamination import EvalText
from humpback.errors import EmptyResultError
from humpback.seed import SeedConfig, SeedSource, build_seed, decontaminate

EVAL = [EvalText("writing-01", "instruction",
                 "Write a short thank-you note to a neighbour who watered my plants while I was away for two weeks."),
        EvalText("k-02", "output", "Weather is the state of the air today; climate is its average over decades."),
        EvalText("k-07", "instruction", "How does a fridge work?")]


def seed(tmp_path: Path, rows: list[dict]):
    path = tmp_path / "s.jsonl"
    path.write_text("".join(json.dumps({"id": f"s{i}", **r}) + "\n" for i, r in enumerate(rows)))
    return build_seed(SeedConfig(sources=[SeedSource(path=str(path), id_column="id")], heldout=0))


def test_a_copied_prompt_or_answer_is_rejected_with_the_eval_id(tmp_path):
    result = decontaminate(seed(tmp_path, [
        {"instruction": "WRITE a short thank you note to a neighbour, who watered my plants!", "output": "Dear Ann, ..."},
        {"instruction": "Explain weather and climate.",
         "output": "In short: weather is the state of the air today, climate is its average over decades."},
        {"instruction": "how does a FRIDGE work", "output": "It pumps heat out."},
        {"instruction": "How does a fridge work at night?", "output": "The same way."},  # whole short text inside
        {"instruction": "Name a plant.", "output": "Fern."},
    ]), EVAL, 13)
    rej = result.rejected.filter(pl.col("reason") == "contaminated")
    assert rej["source_id"].to_list() == ["s0", "s1", "s2", "s3"]
    assert [d.split()[:2] for d in rej["detail"]] == [["writing-01", "instruction"], ["k-02", "output"],
                                                      ["k-07", "instruction"], ["k-07", "instruction"]]
    assert result.kept["source_id"].to_list() == ["s4"]
    assert result.metrics["kept"] == 1 and result.metrics["contaminated"] == 4
    assert result.metrics["rejected"]["contaminated"] == 4


def test_one_word_short_of_the_ngram_is_kept(tmp_path):
    words = ["write", "a", "short", "thank", "you", "note", "to", "a", "neighbour", "who", "watered", "my", "plants"]
    rows = [{"instruction": " ".join(words[:12]) + " soon", "output": "ok"},  # 12 shared words
            {"instruction": " ".join(words[:13]), "output": "ok"}]  # 13
    result = decontaminate(seed(tmp_path, rows), EVAL[:1], 13)
    assert result.kept["source_id"].to_list() == ["s0"]
    assert result.rejected["source_id"].to_list() == ["s1"]


def test_off_and_all_contaminated(tmp_path):
    base = seed(tmp_path, [{"instruction": "How does a fridge work?", "output": "Cold."},
                           {"instruction": "Name a plant.", "output": "Fern."}])
    assert decontaminate(base, EVAL, 0).kept.height == 2
    assert decontaminate(base, [], 13).kept.height == 2
    with pytest.raises(EmptyResultError, match="every seed pair"):
        decontaminate(seed(tmp_path, [{"instruction": "How does a fridge work?", "output": "Cold."}]), EVAL, 13)


def test_the_stage_rejects_the_bundled_pairs_that_copy_the_eval_prompts(tmp_path, monkeypatch, capsys):
    out = tmp_path / "seed.parquet"
    proc = dvc_stage.run_in_process(dvc_stage.REPO, "seed", None, "--out", str(out), "--heldout", str(tmp_path / "h.parquet"),
                             "--rejected", str(tmp_path / "r.parquet"), "--metrics", str(tmp_path / "m.json"),
                             monkeypatch=monkeypatch, capsys=capsys)
    assert proc.returncode == 0, proc.stderr
    rej = pl.read_parquet(tmp_path / "r.parquet").filter(pl.col("reason") == "contaminated")
    assert "writing-01" in rej["source_id"].to_list()  # the bundled pair that is an eval prompt word for word
    kept = set(pl.read_parquet(out)["instruction"]) | set(pl.read_parquet(tmp_path / "h.parquet")["instruction"])
    assert not kept & set(rej["instruction"])
    assert json.loads((tmp_path / "m.json").read_text())["contaminated"] == rej.height
