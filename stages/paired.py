"""Stage paired: each model of eval.models judged head to head against the one before it.

Per comparison <a>_vs_<b> the judgements (both orders) go to <out>/<a>_vs_<b>.parquet, resumable in
chunks; --metrics gets a's win rate over b with a paired bootstrap 95% interval over prompts.
"""

import argparse
import logging
from pathlib import Path

from humpback.config import inside, load_section
from humpback.evaluation import loading
from humpback.evaluation.judge import PairwiseJudge, judge_in_chunks
from humpback.evaluation.paired import comparison, comparison_name, consecutive_pairs, head_to_head
from humpback.io import write_json
from humpback.readers import read_table
from humpback.stage import stage

log = logging.getLogger("humpback.paired")


@stage
def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", required=True)
    ap.add_argument("--outputs", type=Path, required=True, help="directory of <model>.parquet answers")
    ap.add_argument("--judge-model", required=True, help="the local judge's directory (unused with judge.base_url)")
    ap.add_argument("--out", type=Path, required=True, help="directory for <a>_vs_<b>.parquet judgements")
    ap.add_argument("--metrics", required=True, help="the comparisons, JSON")
    args = ap.parse_args(argv)
    ev = load_section("eval", args.params)
    cfg = load_section("judge", args.params)
    columns = ["prompt_id", "category", "instruction", "output"]
    pairs = {}
    for a, b in consecutive_pairs(ev.models):
        a_path, b_path = inside(args.outputs, f"{a}.parquet"), inside(args.outputs, f"{b}.parquet")
        pairs[(a, b)] = head_to_head(read_table(a_path, columns=columns), read_table(b_path, columns=columns),
                                     a_path=a_path, b_path=b_path)
    if args.out.exists():  # a directory out: only this run's comparisons in it
        for stale in args.out.glob("*.parquet"):
            if stale.stem not in {comparison_name(a, b) for a, b in pairs}:
                stale.unlink()
    args.out.mkdir(parents=True, exist_ok=True)
    differs = any((p["output"].str.strip_chars() != p["reference_output"].str.strip_chars()).any() for p in pairs.values())
    engine_cfg = load_section("engine", args.params)  # opens the judge and is fingerprinted: one object
    engine = loading.load_judge_engine(cfg, args.judge_model, engine_cfg) if differs else None
    comparisons = {}
    try:
        judge = PairwiseJudge(engine, cfg)
        for (a, b), p in pairs.items():
            name = comparison_name(a, b)
            judgements = judge_in_chunks(p, judge, inside(args.out, f"{name}.parquet"), engine_cfg,
                                         args.judge_model, desc=f"judge {name}")
            comparisons[name] = comparison(judgements, a, b, resamples=ev.paired.resamples, seed=ev.paired.seed)
            c = comparisons[name]
            log.info("%s: %.1f [%.1f, %.1f] over %d prompts%s", name, c["win_rate"], c["ci_low"], c["ci_high"],
                     c["n"], "" if c["excludes_50"] else " (the interval includes 50: no claim)")
    finally:
        if engine is not None:
            engine.close()
    write_json({"judge": loading.judge_name(cfg, args.judge_model), "comparisons": comparisons}, args.metrics)


if __name__ == "__main__":
    main()
