"""Pipeline outputs for the candidate browser's tests, written by the pipeline's own code where it can:
augment's filter splits the generated instructions into candidates and rejected rows, select's
run_select keeps the scored pairs and records its settings. Only the model's words and ratings are
stand-ins: `realistic` takes the bundled seed pairs (human-written instructions and answers, the
answers standing for web segments), degrades some instructions the way small backward models do, and
draws scores around 3.5, the band a small judge's expected scores fall in.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl

from humpback.augment import FilterConfig, filter_candidates
from humpback.curation.config import SelectConfig
from humpback.curation.selection import run_select
from humpback.evaluation.candidates_page import CandidatePaths

REPO = Path(__file__).resolve().parents[1]
HOSTILE = '</script><img src=x onerror="document.title=\'pwned\'"><!-- & \u2028'


def paths(root: Path) -> CandidatePaths:
    return CandidatePaths(candidates=root / "data/augmented/candidates.parquet",
                          rejected=root / "data/augmented/rejected.parquet", scored=root / "data/scores",
                          curated=root / "data/curated", curation_metrics=root / "metrics/curation")


def write_outputs(root: Path, generated: pl.DataFrame, scores: dict[str, list[float | None]],
                  select: dict[str, SelectConfig] | None = None) -> CandidatePaths:
    """`generated`: segment_id, raw_instruction, text, header, doc_id (what the backward model wrote);
    `scores`: per iteration, one score per candidate that passes augment's filter, in order."""
    p = paths(root)
    for d in (p.candidates.parent, p.scored, p.curated, p.curation_metrics):
        d.mkdir(parents=True, exist_ok=True)
    kept, rejected = filter_candidates(generated, FilterConfig())
    kept.write_parquet(p.candidates)
    rejected.write_parquet(p.rejected)
    for it, values in scores.items():
        scored = kept.select("segment_id", "instruction", "output").with_columns(
            pl.Series("score", values[: kept.height], dtype=pl.Float64), pl.lit("logprob").alias("mode"))
        scored.write_parquet(p.scored / f"{it}.parquet")
        run_select(p.scored / f"{it}.parquet", (select or {}).get(it, SelectConfig()),
                   curated_path=p.curated / f"{it}.parquet", metrics_path=p.curation_metrics / f"{it}.json")
    return p


# What small backward models write instead of a request (augment's filter rejects each)
DEGENERATE = ["Write an instruction for this text.", "", "Response:", "Hello! How can I help you today?",
              "why is it why is it why is it why is it why is it why is it", "???"]


def realistic(root: Path, hostile: bool = True) -> CandidatePaths:
    seed = [json.loads(line) for line in (REPO / "data/seed/seed.jsonl").read_text().splitlines() if line.strip()]
    raw, texts = [], []
    for i, r in enumerate(seed):
        if i % 9 == 4:
            raw.append(DEGENERATE[(i // 9) % len(DEGENERATE)])
        elif i % 9 == 7:
            raw.append(r["output"].split("\n")[0][:200])  # an echo of the segment's first line
        else:
            raw.append(f'Instruction: "{r["instruction"]}"' if i % 5 == 0 else r["instruction"])
        texts.append(r["output"])
    if hostile:
        raw[1], texts[2] = HOSTILE + " Explain what this markup does.", texts[2] + "\n" + HOSTILE
    generated = pl.DataFrame({"segment_id": [f"seg-{i:05d}" for i in range(len(seed))], "raw_instruction": raw,
                              "text": texts, "header": [r.get("category", "") for r in seed],
                              "doc_id": [r.get("id", "") for r in seed]})
    rng = np.random.default_rng(7)
    base = np.clip(rng.normal(3.5, 0.45, len(seed)), 1, 5)
    it1 = [None if rng.random() < 0.04 else float(round(s, 3)) for s in base]
    it2 = [None if s is None else float(round(np.clip(s + rng.normal(0.1, 0.3), 1, 5), 3)) for s in it1]
    return write_outputs(root, generated, {"it1": it1, "it2": it2},
                         select={"it2": SelectConfig(threshold=3.0, top_share=0.4)})
