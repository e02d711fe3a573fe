"""Seed stage: pick the human-written seed pairs (bundled set, oasst1, any pairs table) named in params `seed:`.

Writes data/prepared/seed.parquet (instruction, output, source, source_id): the training pairs; the
`seed.heldout` pairs set aside for the held-out likelihood to --heldout (same columns; no model
trains on them); the rejected rows with their reason beside it (a pair that copies an eval prompt or reference
answer: `contaminated`, with the eval id), and the counts to metrics/seed.json.
"""

from __future__ import annotations

import argparse
import logging

from humpback import ledger
from humpback.config import load_section
from humpback.decontamination import eval_texts_if_present
from humpback.io import write_json, write_parquet
from humpback.seed import SeedConfig, build_seed, decontaminate, split_heldout
from humpback.stage import stage

log = logging.getLogger("humpback.seed")


@stage
def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--heldout", required=True, help="the held-out pairs, e.g. data/prepared/heldout.parquet")
    ap.add_argument("--rejected", required=True)
    ap.add_argument("--metrics", required=True)
    ap.add_argument("--eval-prompts", help="eval prompts file (params eval.prompts): no seed pair may share "
                                           "a long n-gram with a prompt or its reference answer")
    args = ap.parse_args(argv)

    cfg: SeedConfig = load_section("seed", args.params)
    texts = None
    if cfg.decontamination_ngram > 0:
        texts = eval_texts_if_present(args.eval_prompts, load_section("eval", args.params))
    result = decontaminate(build_seed(cfg), texts or [], cfg.decontamination_ngram)
    if texts is None and cfg.decontamination_ngram > 0:
        log.warning("no eval prompts file (%s): seed pairs were not checked against the eval set", args.eval_prompts)
    result = split_heldout(result, cfg.heldout, cfg.seed)
    write_parquet(result.kept, args.out)
    write_parquet(result.heldout, args.heldout)
    write_parquet(result.rejected, args.rejected)
    write_json(result.metrics, args.metrics)
    ledger.add_examples(result.kept.height + result.heldout.height + result.rejected.height)
    log.info("kept %d seed pairs, held out %d, rejected %d %s", result.kept.height, result.heldout.height,
             result.rejected.height, result.metrics["rejected"])


if __name__ == "__main__":
    main()
