"""Self-curation scoring: `logprob` mode (one forward pass) vs `generate` mode (reasoning + "Score: n").

    python bench/scoring.py [--base models/base] [--pairs 16] [--max-new-tokens 256]

The pairs are candidate-like: `--pairs` seed pairs from data/seed/seed.jsonl as written, and as
many corrupted copies (an answer to another instruction, an answer cut after its first sentence,
navigation text instead of an answer). Both modes score the same pairs with the same loaded
model through `humpback.curation.scoring.score_chunk`, the code the score stage runs. Reported:
pairs/s of each mode, the speedup, the parse-failure rate of generate mode, the rank and linear
correlation of the two modes' scores, and how well each separates good from corrupted pairs (AUC).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import polars as pl

from humpback.curation.config import ScoreConfig
from humpback.curation.scoring import score_chunk
from humpback.engines.base import SamplingParams
from humpback.engines.config import EngineConfig
from humpback.engines.transformers_engine import TransformersEngine
from humpback.models import BaseModelConfig, prepare_base
from humpback.prompts import PromptsConfig

ROOT = Path(__file__).resolve().parents[1]
SEED = ROOT / "data" / "seed" / "seed.jsonl"
NAVIGATION = ("Home | About us | Blog | Contact\nSign up for our newsletter to get the latest deals.\n"
              "Follow us on social media. Copyright 2024. All rights reserved.")


def candidate_pairs(n: int, seed_path: Path = SEED) -> pl.DataFrame:
    """`n` seed pairs spread over the file, plus `n` corrupted pairs; `good` marks the untouched ones."""
    rows = [json.loads(line) for line in seed_path.read_text(encoding="utf-8").splitlines() if line.strip()]
    step = max(1, len(rows) // n)
    picked = rows[::step][:n]
    out = []
    for i, r in enumerate(picked):
        out.append({"segment_id": f"good-{i}", "instruction": r["instruction"], "output": r["output"], "good": True})
        kind = i % 3
        if kind == 0:  # off-topic: the answer to another instruction
            output = picked[(i + n // 2 + 1) % len(picked)]["output"]
        elif kind == 1:  # incomplete: the first sentence only
            output = r["output"].split(". ")[0].split("\n")[0]
        else:  # navigation / promotion text
            output = NAVIGATION
        out.append({"segment_id": f"bad-{i}", "instruction": r["instruction"], "output": output, "good": False})
    return pl.DataFrame(out)


def _auc(scores: list, good: list) -> float | None:
    from sklearn.metrics import roc_auc_score

    pairs = [(s, g) for s, g in zip(scores, good, strict=True) if s is not None]
    if min(sum(g for _, g in pairs), sum(not g for _, g in pairs)) < 3:
        return None  # too few scored pairs of a kind for the figure to mean anything
    return round(float(roc_auc_score([g for _, g in pairs], [s for s, _ in pairs])), 3)


def run(base: str | None = None, n_pairs: int = 16, max_new_tokens: int = 256, batch: int = 16,
        threads: int = 0) -> dict:
    from scipy.stats import pearsonr, spearmanr

    prompts = PromptsConfig()
    df = candidate_pairs(n_pairs)
    results: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        if base is None or not Path(base).exists():
            base = str(prepare_base(BaseModelConfig(), Path(tmp) / "base").base)
        engine = TransformersEngine(base, EngineConfig(backend="transformers", batch_size=batch, cpu_threads=threads))
        score_chunk(df.head(2), 0, engine, ScoreConfig(mode="logprob"), prompts)  # warm-up
        scored = {}
        for mode in ("logprob", "generate"):
            cfg = ScoreConfig(mode=mode, sampling=SamplingParams(max_new_tokens=max_new_tokens))
            start = time.perf_counter()
            scored[mode] = score_chunk(df, 0, engine, cfg, prompts)
            seconds = time.perf_counter() - start
            results[mode] = {"pairs": df.height, "seconds": round(seconds, 1),
                             "pairs_per_s": round(df.height / seconds, 3),
                             "auc_good_vs_corrupted": _auc(scored[mode]["score"].to_list(), df["good"].to_list())}
        results["_setup"] = {"dtype": engine.dtype, "device": engine.device, "max_new_tokens": max_new_tokens,
                             "batch": batch}
        engine.close()
    gen, lp = scored["generate"]["score"].to_list(), scored["logprob"]["score"].to_list()
    both = [(a, b) for a, b in zip(lp, gen, strict=True) if b is not None and a is not None]
    failures = sum(g is None for g in gen)
    agreement = {"parse_failure_rate": round(failures / len(gen), 3), "n_compared": len(both),
                 "spearman": None, "pearson": None}
    if len(both) >= 3 and len({b for _, b in both}) > 1:
        xs, ys = [a for a, _ in both], [b for _, b in both]
        agreement["spearman"] = round(float(spearmanr(xs, ys).statistic), 3)
        agreement["pearson"] = round(float(pearsonr(xs, ys).statistic), 3)
    results["agreement"] = agreement
    results["speedup"] = round(results["logprob"]["pairs_per_s"] / results["generate"]["pairs_per_s"], 1)
    print(f"{'mode':<9} {'pairs':>6} {'seconds':>8} {'pairs/s':>8} {'AUC good>bad':>13}")
    for mode in ("logprob", "generate"):
        r = results[mode]
        print(f"{mode:<9} {r['pairs']:>6} {r['seconds']:>8} {r['pairs_per_s']:>8} {r['auc_good_vs_corrupted']!s:>13}")
    print(f"speedup {results['speedup']}x; agreement {agreement}")
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base")
    ap.add_argument("--pairs", type=int, default=16, help="seed pairs; as many corrupted ones are added")
    ap.add_argument("--max-new-tokens", type=int, default=256)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--threads", type=int, default=0)
    a = ap.parse_args()
    run(a.base, a.pairs, a.max_new_tokens, a.batch, a.threads)


if __name__ == "__main__":
    main()
