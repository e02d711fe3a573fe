"""Stage judge@<model>: pairwise judgement of the model's answers against the reference, both orders.

Writes one row per prompt with both orders' verdicts to --out (resumable in chunks) and the win
rates to --metrics, with the model's held-out NLL (--heldout, from heldout@<model>) merged in. The
length-controlled win rate is not here: it is fitted over all models at once by the
length_controlled stage (metrics/eval/length_controlled.json).
"""

import argparse
import logging
from pathlib import Path

from humpback.config import load_section
from humpback.errors import EmptyResultError, InputError
from humpback.evaluation import loading
from humpback.evaluation.inputs import load_outputs
from humpback.evaluation.judge import PairwiseJudge, judge_in_chunks, pair_outputs, summarise
from humpback.io import write_json
from humpback.readers import read_json, read_table
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
    ap.add_argument("--heldout", required=True, help="the model's held-out NLL, data/eval/heldout/<model>.json")
    args = ap.parse_args(argv)
    cfg = load_section("judge", args.params)
    name = Path(args.outputs).stem
    heldout = read_heldout(args.heldout)  # a bad file fails before any judging

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
    write_json({**metrics, **heldout}, args.metrics)
    log.info("%s vs %s: win rate %.1f, %d unparsed verdicts", name, ref_path.stem, metrics["win_rate"],
             metrics["unparsed_verdicts"])


def read_heldout(path: str) -> dict:
    """The HELDOUT_KEYS of heldout@<model>'s JSON (all null when the file does not exist); a malformed
    or incomplete file is an InputError naming it."""
    p = Path(path)
    if not p.exists():  # DVC never runs judge@ without it (a dep); a hand-run stage may lack it
        log.warning("%s: not found (heldout@ has not run); the held-out numbers are null", p)
        return dict.fromkeys(HELDOUT_KEYS)
    data = read_json(p, "not a file")
    if not isinstance(data, dict):
        raise InputError(p, f"expected a JSON object, got {type(data).__name__}")
    if (absent := [k for k in HELDOUT_KEYS if k not in data]):
        raise InputError(p, f"missing key(s) {', '.join(absent)}")
    for key in HELDOUT_KEYS:
        value, number = data[key], (int, float) if key == "heldout_nll" else (int,)
        if isinstance(value, bool) or not (isinstance(value, number) or (value is None and key == "heldout_nll")):
            raise InputError(p, f"'{key}' must be a number{' or null' if key == 'heldout_nll' else ''}, got {value!r:.40}")
    return {k: data[k] for k in HELDOUT_KEYS}


HELDOUT_KEYS = ("heldout_nll", "heldout_tokens", "heldout_n")


if __name__ == "__main__":
    main()
