"""Stage judge_check: the judge compares reference answers with degraded copies of themselves.

Writes the per-pair judgements (both orders) to --out, resumable in chunks, and to --metrics how
often the judge prefers the intact answer, how often its verdict survives swapping the order, and
whether both meet judge.check's thresholds.
"""

import argparse
import logging
from pathlib import Path

from humpback.config import load_section
from humpback.evaluation import loading
from humpback.evaluation.inputs import load_outputs
from humpback.evaluation.judge import PairwiseJudge
from humpback.evaluation.judge_check import check_pairs, judge_check_in_chunks, summarise_check
from humpback.io import write_json
from humpback.stage import stage

log = logging.getLogger("humpback.judge_check")


@stage
def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", required=True)
    ap.add_argument("--reference", required=True, help="the reference answers the judge stage uses (judge.reference)")
    ap.add_argument("--judge-model", required=True, help="the local judge's directory (unused with judge.base_url)")
    ap.add_argument("--out", required=True, help="per-pair judgements, Parquet")
    ap.add_argument("--metrics", required=True, help="the judge's check, JSON")
    args = ap.parse_args(argv)
    cfg = load_section("judge", args.params)
    ref_path = Path(args.reference)
    pairs = check_pairs(load_outputs(ref_path), cfg.check)
    if pairs.height == 0:
        log.warning("%s: no answer gives a degraded copy (all too short); the judge is not checked", ref_path)
    engine_cfg = load_section("engine", args.params)  # opens the judge and is fingerprinted: one object
    engine = loading.load_judge_engine(cfg, args.judge_model, engine_cfg) if pairs.height else None
    try:
        judgements = judge_check_in_chunks(pairs, PairwiseJudge(engine, cfg), args.out, engine_cfg, args.judge_model)
    finally:
        if engine is not None:
            engine.close()
    metrics = summarise_check(judgements, cfg.check, judge=loading.judge_name(cfg, args.judge_model),
                              reference=ref_path.stem)
    write_json(metrics, args.metrics)
    fmt = lambda v: "n/a" if v is None else f"{v:.2f}"  # noqa: E731
    log.info("judge check: discrimination %s, order consistency %s over %d pairs: %s",
             fmt(metrics["discrimination"]), fmt(metrics["order_consistency"]), metrics["n"],
             "trustworthy" if metrics["trustworthy"] else "NOT trustworthy")


if __name__ == "__main__":
    main()
