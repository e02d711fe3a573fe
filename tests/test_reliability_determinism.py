"""Determinism: the same params and seeds give the same candidates, scores, curated set and metrics on
the transformers backend on CPU (augment -> score -> select, twice, each with a freshly loaded engine).
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import reliability_plugin as ledger

from humpback.augment import AugmentConfig, FilterConfig, run_augment
from humpback.curation.config import ScoreConfig, SelectConfig
from humpback.curation.scoring import run_score
from humpback.curation.selection import run_select
from humpback.engines.base import SamplingParams
from humpback.engines.config import EngineConfig
from humpback.engines.loader import load_engine
from humpback.prompts import PromptsConfig

pytest_plugins = ["reliability_plugin"]

TEXTS = [
    "Boil the eggs for nine minutes, then cool them in cold water so the shells come off cleanly.",
    "Rain forms when water vapour condenses around dust and the droplets grow too heavy to float.",
    "To reverse a list in Python, call list.reverse() to do it in place or use slicing with [::-1].",
    "A sourdough starter needs flour and water every day until it doubles within a few hours.",
    "Stretch your calves and hamstrings after a run, holding each stretch for thirty seconds.",
    "The French Revolution began in 1789 and ended the absolute monarchy of Louis XVI.",
    "Photosynthesis turns light, water and carbon dioxide into sugar and oxygen in the leaves.",
    "Back up your files to an external disk and to a cloud service so one failure loses nothing.",
    "A haiku has three lines of five, seven and five syllables and often mentions a season.",
    "Compound interest adds the interest earned back to the principal, so growth speeds up over time.",
]
# a random model writes noise: let everything but empty replies through
PERMISSIVE = FilterConfig(min_chars=1, min_words=0, max_chars=10**6, max_words=10**6, min_alpha_ratio=0.0,
                          max_repeated_ngram_share=2.0, max_echo_overlap=2.0, meta_patterns=[], assistant_voice_patterns=[])
ENGINE = EngineConfig(backend="transformers", device="cpu", dtype="float32", batch_size=4, cpu_threads=1)


def pipeline(model: Path, out: Path, segments: Path) -> dict:
    prompts = PromptsConfig()
    metrics = {}
    with load_engine(model, ENGINE) as engine:  # a fresh engine per run: no state carried over
        metrics["augment"] = run_augment(
            segments, engine, AugmentConfig(chunk_size=3, seed=5, sampling=SamplingParams(max_new_tokens=10),
                                            filter=PERMISSIVE),
            prompts, candidates_path=out / "candidates.parquet", rejected_path=out / "rejected.parquet",
            metrics_path=out / "augment.json", engine_cfg=ENGINE, model_dir=model)
        metrics["score"] = run_score(out / "candidates.parquet", engine, ScoreConfig(mode="logprob", chunk_size=4), prompts,
                                     scores_path=out / "scores.parquet", metrics_path=out / "scores.json",
                                     engine_cfg=ENGINE, model_dir=model)
        gen = ScoreConfig(mode="generate", chunk_size=4, seed=3, sampling=SamplingParams(max_new_tokens=8))
        metrics["score_generate"] = run_score(out / "candidates.parquet", engine, gen, prompts,
                                              scores_path=out / "scores_gen.parquet", metrics_path=out / "scores_gen.json",
                                              engine_cfg=ENGINE, model_dir=model)
    metrics["select"] = run_select(out / "scores.parquet", SelectConfig(threshold=1.0, top_share=0.5),
                                   curated_path=out / "curated.parquet", metrics_path=out / "curation.json")
    return metrics


def without_timings(m: dict) -> dict:
    return {k: without_timings(v) if isinstance(v, dict) else v for k, v in m.items() if k != "seconds"}


def test_augment_score_select_twice_give_identical_outputs(tmp_path, tiny_model_dir):
    segments = tmp_path / "segments.parquet"
    pl.DataFrame({"segment_id": [f"s{i:02d}" for i in range(len(TEXTS))], "text": TEXTS}).write_parquet(segments)
    a = pipeline(tiny_model_dir, tmp_path / "a", segments)
    b = pipeline(tiny_model_dir, tmp_path / "b", segments)
    assert a["augment"]["kept"] >= len(TEXTS) // 2 and a["select"]["kept"] == -(-a["augment"]["kept"] // 2)
    names = ["candidates.parquet", "rejected.parquet", "scores.parquet", "scores_gen.parquet", "curated.parquet"]
    for name in names:
        fa, fb = pl.read_parquet(tmp_path / "a" / name), pl.read_parquet(tmp_path / "b" / name)
        assert fa.equals(fb), name
    assert not ledger.outputs("determinism: augment -> score -> select twice, byte-identical",
                              {n: (tmp_path / "a" / n).read_bytes() for n in names},
                              {n: (tmp_path / "b" / n).read_bytes() for n in names})
    assert without_timings(a) == without_timings(b)
    for name in ("augment.json", "scores.json", "scores_gen.json", "curation.json"):
        ja = without_timings(json.loads((tmp_path / "a" / name).read_text()))
        jb = without_timings(json.loads((tmp_path / "b" / name).read_text()))
        ja.pop("model", None), jb.pop("model", None)
        assert ja == jb, name
