"""The bundled seed set data/seed/seed.jsonl: size, coverage, uniqueness and answer length."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

SEED = Path(__file__).resolve().parents[1] / "data" / "seed" / "seed.jsonl"
CATEGORIES = {"writing", "coding", "maths", "advice", "explanation", "planning", "classification",
              "brainstorming", "roleplay", "safety"}


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    with open(SEED, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def test_size_and_fields(rows):
    assert len(rows) >= 150
    for r in rows:
        assert set(r) == {"id", "category", "instruction", "output"}, r.get("id")
        for key in ("id", "category", "instruction", "output"):
            assert isinstance(r[key], str) and r[key].strip(), (r.get("id"), key)
            assert r[key] == r[key].strip(), (r["id"], key)


def test_every_category_is_well_represented(rows):
    counts = Counter(r["category"] for r in rows)
    assert set(counts) == CATEGORIES
    assert min(counts.values()) >= 10


def test_no_duplicates(rows):
    assert len({r["id"] for r in rows}) == len(rows)
    assert len({r["instruction"] for r in rows}) == len(rows)
    assert len({r["output"] for r in rows}) == len(rows)


def test_answers_are_moderate_in_length(rows):
    words = [len(r["output"].split()) for r in rows]
    assert sum(60 <= w <= 220 for w in words) >= 0.9 * len(rows)
    assert max(words) <= 300


def test_safety_answers_decline_and_redirect(rows):
    for r in rows:
        if r["category"] == "safety":
            assert "can't" in r["output"] or "won't" in r["output"] or "not able" in r["output"], r["id"]
