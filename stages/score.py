"""Stage score@<iteration>: the previous model rates every candidate pair (self-curation, scoring).

Reads data/augmented/candidates.parquet and the scoring model (--model, e.g. models/m0); writes
data/scores/<iteration>.parquet (segment_id, instruction, output, score, score_int, digit_mass,
ratings, raw, mode) and metrics/scores/<iteration>.json. Resumable in chunks. A logprob run on a
backend without log-probabilities scores in generate mode (a warning; the metrics name both modes).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from humpback.config import load_section
from humpback.curation.config import ScoreConfig
from humpback.curation.scoring import run_score
from humpback.engines import loader
from humpback.errors import InputError
from humpback.stage import stage

log = logging.getLogger("humpback.score")


@stage
def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", required=True)
    ap.add_argument("--model", required=True, help="the scoring model's directory, e.g. models/m0")
    ap.add_argument("--candidates", required=True)
    ap.add_argument("--out", required=True, help="the scores, Parquet")
    ap.add_argument("--metrics", required=True, help="score statistics, JSON")
    args = ap.parse_args(argv)

    cfg: ScoreConfig = load_section("score", args.params)
    prompts = load_section("prompts", args.params)
    model = Path(args.model)
    if not model.exists():
        raise InputError(model, "scoring model not found (run the stage that trains it first)")
    engine_cfg = load_section("engine", args.params)  # opens the model and is fingerprinted: one object
    with loader.load_engine(model, engine_cfg) as engine:
        m = run_score(args.candidates, engine, cfg, prompts, model_dir=model, engine_cfg=engine_cfg,
                      scores_path=args.out, metrics_path=args.metrics)
    mode = m["mode"] if m["fallback"] is None else f"{m['mode']} mode, not the {m['requested_mode']}"
    log.info("scored %d pairs with %s (%s mode): histogram %s, parse failures %d",
             m["n"], model, mode, m["histogram"], m["parse_failures"])


if __name__ == "__main__":
    main()
