"""Stage judge@<model>: pairwise judgement of the model's answers against the reference, both orders."""

import argparse
import logging
from pathlib import Path

from humpback.chunks import process_in_chunks
from humpback.config import load_section
from humpback.errors import EmptyResultError
from humpback.evaluation import loading
from humpback.evaluation.inputs import load_outputs
from humpback.evaluation.judge import PairwiseJudge, pair_outputs, summarise
from humpback.io import read_table, write_json
from humpback.stage import stage

log = logging.getLogger("humpback.judge")


@stage
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", required=True, help="model whose answers are judged (data/eval/outputs/<model>.parquet)")
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args()
    cfg = load_section("judge", args.params)

    outputs = read_table(loading.OUTPUTS_DIR / f"{args.model}.parquet",
                         columns=["prompt_id", "category", "instruction", "output"])
    ref_path, ref_name = loading.reference_path(cfg.reference)
    pairs, missing = pair_outputs(outputs, load_outputs(ref_path))
    if missing:
        log.warning("%d of %d prompts have no reference answer in %s; they are not judged",
                    missing, outputs.height, ref_path)
    if pairs.height == 0:
        raise EmptyResultError(f"{ref_path}: no reference answer matches any instruction of {args.model}")

    name = loading.judge_name(cfg)
    # Identical answers are ties without a judge call; skip loading the judge when nothing differs.
    differs = (pairs["output"].str.strip_chars() != pairs["reference_output"].str.strip_chars()).any()
    engine = loading.load_judge_engine(cfg, args.params) if differs else None
    try:
        judge = PairwiseJudge(engine, cfg)
        settings = {"judge": name, "reference": str(ref_path), "mode": cfg.mode, "template": cfg.template,
                    "prefix": cfg.prefix, "labels": cfg.labels, "max_new_tokens": cfg.max_new_tokens}
        judgements = process_in_chunks(pairs, Path("data/eval/judgements") / f"{args.model}.parquet",
                                       lambda chunk, _i: judge.judge(chunk), chunk_size=cfg.chunk_size,
                                       settings=settings, desc=f"judge {args.model}")
    finally:
        if engine is not None:
            engine.close()
    metrics = summarise(judgements, judge=name, reference=ref_name, n_missing_reference=missing)
    write_json(metrics, Path("metrics/eval") / f"{args.model}.json")
    log.info("%s vs %s: win rate %.1f (LC %s), %d unparsed verdicts", args.model, ref_name, metrics["win_rate"],
             f"{metrics['lc_win_rate']:.1f}" if metrics["lc_win_rate"] is not None else "n/a",
             metrics["unparsed_verdicts"])


if __name__ == "__main__":
    main()
