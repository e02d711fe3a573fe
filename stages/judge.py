"""Stage judge@<model>: pairwise judgement of the model's answers against the reference, both orders.

Writes one row per prompt with both orders' verdicts to --out (resumable in chunks) and the win
rates to --metrics.
"""

import argparse
import logging
from pathlib import Path

from humpback.config import load_section
from humpback.errors import EmptyResultError
from humpback.evaluation import loading
from humpback.evaluation.inputs import load_outputs
from humpback.evaluation.judge import PairwiseJudge, judge_in_chunks, pair_outputs, summarise
from humpback.io import write_json
from humpback.readers import read_table
from humpback.stage import stage

log = logging.getLogger("humpback.judge")


@stage
def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", required=True)
    ap.add_argument("--outputs", required=True, help="the judged model's answers, e.g. data/eval/outputs/it1.parquet")
    ap.add_argument("--reference", required=True, help="the reference answers (a model's outputs or AlpacaEval JSON)")
    ap.add_argument("--judge-model", required=True, help="the local judge's directory (unused with judge.base_url)")
    ap.add_argument("--out", required=True, help="judgements, Parquet")
    ap.add_argument("--metrics", required=True, help="win rates, JSON")
    args = ap.parse_args(argv)
    cfg = load_section("judge", args.params)
    name = Path(args.outputs).stem

    outputs = read_table(args.outputs, columns=["prompt_id", "category", "instruction", "output"])
    ref_path = Path(args.reference)
    pairs, missing = pair_outputs(outputs, load_outputs(ref_path))
    if missing:
        log.warning("%d of %d prompts have no reference answer in %s; they are not judged",
                    missing, outputs.height, ref_path)
    if pairs.height == 0:
        raise EmptyResultError(f"{ref_path}: no reference answer matches any instruction of {args.outputs}")

    judge_name = loading.judge_name(cfg, args.judge_model)
    # Identical answers are ties without a judge call; skip loading the judge when nothing differs.
    differs = (pairs["output"].str.strip_chars() != pairs["reference_output"].str.strip_chars()).any()
    engine_cfg = load_section("engine", args.params)  # opens the judge and is fingerprinted: one object
    engine = loading.load_judge_engine(cfg, args.judge_model, engine_cfg) if differs else None
    try:
        judge = PairwiseJudge(engine, cfg)
        judgements = judge_in_chunks(pairs, judge, args.out, engine_cfg, args.judge_model, desc=f"judge {name}")
    finally:
        if engine is not None:
            engine.close()
    metrics = summarise(judgements, judge=judge_name, reference=ref_path.stem, n_missing_reference=missing)
    write_json(metrics, args.metrics)
    log.info("%s vs %s: win rate %.1f (LC %s), %d unparsed verdicts", name, ref_path.stem, metrics["win_rate"],
             f"{metrics['lc_win_rate']:.1f}" if metrics["lc_win_rate"] is not None else "n/a",
             metrics["unparsed_verdicts"])


if __name__ == "__main__":
    main()
