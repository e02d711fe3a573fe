"""Augment and score through the real transformers engine on a tiny random model (seconds on CPU):
checks that the stages and the engine agree on the interface, not the quality of the ratings."""

import math

import polars as pl
import pytest

from humpback.augment import AugmentConfig, FilterConfig, run_augment
from humpback.curation.config import ScoreConfig
from humpback.curation.scoring import run_score
from humpback.engines.base import SamplingParams
from humpback.engines.config import EngineConfig
from humpback.engines.loader import load_engine
from humpback.models import TinyConfig, build_tiny
from humpback.prompts import PromptsConfig

ENGINE = EngineConfig(backend="transformers", device="cpu", dtype="float32")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    model = tmp_path_factory.mktemp("tiny")
    build_tiny(model, TinyConfig())
    return model


@pytest.fixture(scope="module")
def tiny_engine(tiny_model):
    with load_engine(tiny_model, ENGINE) as engine:
        yield engine


def test_logprob_and_generate_scoring_with_a_real_engine(tiny_engine, tiny_model, tmp_path):
    cand = tmp_path / "candidates.parquet"
    pl.DataFrame({"segment_id": ["a", "b", "c"], "instruction": ["How do I boil an egg?", "Explain rain.", "Why?"],
                  "output": ["Boil it for nine minutes.", "Water vapour condenses and falls.", "Because."]}
                 ).write_parquet(cand)
    m = run_score(cand, tiny_engine, ScoreConfig(mode="logprob", chunk_size=2), PromptsConfig(),
                  scores_path=tmp_path / "lp.parquet", metrics_path=tmp_path / "lp.json", engine_cfg=ENGINE,
                  model_dir=tiny_model)
    df = pl.read_parquet(tmp_path / "lp.parquet")
    assert m["parse_failures"] == 0
    assert all(1.0 <= s <= 5.0 for s in df["score"]) and all(0.0 < p <= 1.0 for p in df["digit_mass"])
    assert set(df["score_int"]) <= {1, 2, 3, 4, 5}
    assert m["mode"] == m["requested_mode"] == "logprob" and m["fallback"] is None

    cfg = ScoreConfig(mode="generate", chunk_size=2, samples=2, sampling=SamplingParams(max_new_tokens=6))
    m = run_score(cand, tiny_engine, cfg, PromptsConfig(), scores_path=tmp_path / "g.parquet",
                  metrics_path=tmp_path / "g.json", engine_cfg=ENGINE, model_dir=tiny_model)
    df = pl.read_parquet(tmp_path / "g.parquet")
    assert df["raw"].null_count() == 0 and m["n"] == 3
    assert all(len(texts) == 2 for texts in df["raw"]) and all(len(r) == 2 for r in df["ratings"])
    assert m["pairs_by_ratings_parsed"]["0"] == m["parse_failures"]
    assert m["parse_failures"] + sum(v for k, v in m["histogram"].items() if k != "unparsed") == 3
    assert not math.isnan(m["parse_failure_rate"])


def test_augment_with_a_real_engine(tiny_engine, tiny_model, tmp_path):
    seg = tmp_path / "segments.parquet"
    pl.DataFrame({"segment_id": ["a", "b"], "text": ["Boil the egg for nine minutes.", "Rain is condensed vapour."]}
                 ).write_parquet(seg)
    # a random model writes noise: let everything but empty replies through
    permissive = FilterConfig(min_chars=1, min_words=0, max_chars=10**6, max_words=10**6, min_alpha_ratio=0.0,
                              max_repeated_ngram_share=2.0, max_echo_overlap=2.0, meta_patterns=[],
                              assistant_voice_patterns=[])
    cfg = AugmentConfig(chunk_size=1, seed=3, sampling=SamplingParams(max_new_tokens=6), filter=permissive)
    runs = []
    for name in ("first", "again"):  # chunk i samples with seed + i: the same candidates every time
        d = tmp_path / name
        m = run_augment(seg, tiny_engine, cfg, PromptsConfig(), candidates_path=d / "c.parquet",
                        rejected_path=d / "r.parquet", metrics_path=d / "a.json", engine_cfg=ENGINE,
                        model_dir=tiny_model)
        assert m["segments_in"] == 2 and m["kept"] == 2
        runs.append(pl.read_parquet(d / "c.parquet"))
    assert runs[0].equals(runs[1])
    assert all(isinstance(t, str) and t for t in runs[0]["instruction"])
