"""Training stage: fine-tune the base model for one role of the pipeline.

  --kind backward  seed pairs reversed (output -> instruction), no tag    -> the backward model M_yx
  --kind m0        seed pairs under the seed tag                          -> M0, the first curator
  --kind forward   seed (seed tag) + --curated pairs (augmented tag)      -> M1, M2, ...

Always fine-tunes the base model (models/base), as the paper does. Writes the adapter or checkpoint
to --out and the run's numbers to metrics/train/<name of --out>.json. Runs the same under
`accelerate launch --config_file configs/accelerate/<ddp|fsdp|deepspeed_zero3>.yaml stages/train.py ...`.
"""

from __future__ import annotations

import argparse
import logging

import torch.distributed as dist

from humpback.config import load_section
from humpback.errors import ConfigError
from humpback.io import write_json
from humpback.stage import stage
from humpback.training import KINDS, build_examples, read_pairs, train_model

log = logging.getLogger("humpback.train")


@stage
def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kind", choices=KINDS, required=True)
    ap.add_argument("--out", required=True, help="model directory to write, e.g. models/m0")
    ap.add_argument("--curated", help="curated pairs (forward only), e.g. data/curated/it1.parquet")
    ap.add_argument("--seed-data", required=True)
    ap.add_argument("--base", required=True)
    ap.add_argument("--params", required=True)
    ap.add_argument("--metrics", required=True, help="the run's numbers, JSON")
    args = ap.parse_args(argv)
    if (args.kind == "forward") != bool(args.curated):
        raise ConfigError("--curated is required for --kind forward and only for it")

    cfg = load_section("train", args.params)
    prompts = load_section("prompts", args.params)
    seed = read_pairs(args.seed_data, "seed pairs")
    curated = read_pairs(args.curated, "curated pairs") if args.curated else None
    examples = build_examples(args.kind, prompts, seed, curated, args.seed_data, args.curated or "")

    metrics = train_model(examples, args.base, args.out, cfg)
    metrics = {"kind": args.kind, "base": args.base, **metrics}
    # only the main process writes the metrics
    if not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0:
        write_json(metrics, args.metrics)
        log.info("%s: %d examples, %d steps, loss %.3f -> %.3f, %.0f tokens/s", args.out, metrics["examples"],
                 metrics["steps"], metrics["train_loss_first"] or 0, metrics["train_loss_last"] or 0,
                 metrics["tokens_per_s"] or 0)


if __name__ == "__main__":
    main()
