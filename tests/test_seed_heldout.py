"""The held-out seed slice: seeded, stable, removed from every training set, counted, and bounded."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import dvc_stage
import polars as pl
import pytest

from humpback.errors import ConfigError
from humpback.prompts import PromptsConfig
from humpback.seed import SeedConfig, SeedSource, build_seed, split_heldout
from humpback.training.data import build_examples

REPO = Path(__file__).resolve().parents[1]


def pairs(n: int, start: int = 0) -> list[dict]:
    return [{"id": f"q{i}", "instruction": f"Question {i}?", "output": f"Answer number {i}."} for i in range(start, start + n)]


def write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def split(tmp_path: Path, rows: list[dict], heldout: int, seed: int = 0, name: str = "p.jsonl"):
    cfg = SeedConfig(sources=[SeedSource(path=str(write(tmp_path / name, rows)), id_column="id")],
                     heldout=heldout, seed=seed)
    return split_heldout(build_seed(cfg), cfg.heldout, cfg.seed)


def texts(df: pl.DataFrame) -> set[tuple[str, str]]:
    return set(zip(df["instruction"], df["output"], strict=True))


def test_count_honoured_and_disjoint(tmp_path):
    res = split(tmp_path, pairs(40), heldout=7)
    assert res.heldout.height == res.metrics["heldout"] == 7
    assert res.kept.height == res.metrics["kept"] == 33 and res.metrics["selected"] == 40
    assert not texts(res.kept) & texts(res.heldout)
    assert texts(res.kept) | texts(res.heldout) == {(r["instruction"], r["output"]) for r in pairs(40)}
    assert res.heldout.columns == res.kept.columns == ["instruction", "output", "source", "source_id"]


def test_deterministic_and_seeded(tmp_path):
    a, b = split(tmp_path, pairs(40), 8), split(tmp_path, pairs(40), 8)
    assert a.heldout.equals(b.heldout) and a.kept.equals(b.kept)
    assert texts(split(tmp_path, pairs(40), 8, seed=1).heldout) != texts(a.heldout)


def test_picked_by_content_not_position(tmp_path):
    """Reordering the file, or adding pairs, keeps the held-out pairs the same unless a new pair
    outranks one: the choice is a seeded hash of each pair's text."""
    base = split(tmp_path, pairs(40), 8)
    shuffled = split(tmp_path, list(reversed(pairs(40))), 8, name="r.jsonl")
    assert texts(shuffled.heldout) == texts(base.heldout)
    grown = split(tmp_path, pairs(40) + pairs(10, start=40), 8, name="g.jsonl")
    moved = texts(base.heldout) - texts(grown.heldout)
    newcomers = texts(grown.heldout) - texts(base.heldout)
    assert len(moved) == len(newcomers) and all(int(i.split()[1][:-1]) >= 40 for i, _ in newcomers)


def test_zero_holds_out_nothing(tmp_path):
    res = split(tmp_path, pairs(5), heldout=0)
    assert res.kept.height == 5 and res.heldout.height == 0 and res.metrics["heldout"] == 0
    assert res.heldout.columns == res.kept.columns


def test_too_many_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match=r"seed.heldout: holding out 5 pairs leaves no training pair \(5 seed pairs"):
        split(tmp_path, pairs(5), heldout=5)
    assert split(tmp_path, pairs(5), heldout=4).kept.height == 1  # one training pair is enough


def stage(tmp_path: Path, params: str) -> subprocess.CompletedProcess:
    (tmp_path / "params.yaml").write_text(params)
    return dvc_stage.run_subprocess("seed", cwd=tmp_path, timeout=120)


def test_stage_keeps_heldout_out_of_every_training_set(tmp_path):
    write(tmp_path / "p.jsonl", pairs(30))
    proc = stage(tmp_path, "seed:\n  sources:\n    - {path: p.jsonl, id_column: id}\n  heldout: 6\n")
    assert proc.returncode == 0, proc.stderr
    seed = pl.read_parquet(tmp_path / "data/prepared/seed.parquet")
    heldout = pl.read_parquet(tmp_path / "data/prepared/heldout.parquet")
    assert json.loads((tmp_path / "metrics/seed.json").read_text())["heldout"] == heldout.height == 6
    held = texts(heldout)
    prompts = PromptsConfig()
    curated = pl.DataFrame({"instruction": ["Web q?"], "output": ["Web a."]})
    for kind in ("backward", "m0", "forward"):
        examples = build_examples(kind, prompts, seed, curated if kind == "forward" else None)
        assert len(examples) == seed.height + (kind == "forward")
        text = "\n".join(m["content"] for ex in examples for m in ex.messages)
        for ins, out in held:  # neither the question nor the answer reaches any training prompt or reply
            assert ins not in text and out not in text, (kind, ins)
        for ins, out in texts(seed):
            assert ins in text and out in text, (kind, ins)


def test_stage_too_many_is_one_line(tmp_path):
    write(tmp_path / "p.jsonl", pairs(3))
    proc = stage(tmp_path, "seed:\n  sources:\n    - {path: p.jsonl}\n  heldout: 3\n")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("error: seed.heldout: holding out 3 pairs")
    assert not (tmp_path / "data/prepared/seed.parquet").exists()
