"""Seed stage: pick the human-written seed pairs (bundled set, oasst1, any pairs table) named in params `seed:`.

Writes data/prepared/seed.parquet (instruction, output, source, source_id): the training pairs; the
`seed.heldout` pairs set aside for the held-out likelihood to --heldout (same columns; no model
trains on them); the rejected rows with their reason beside it, and the counts to metrics/seed.json.
"""

from __future__ import annotations

import argparse
import logging

from humpback.config import load_section
from humpback.io import write_json, write_parquet
from humpback.seed import SeedConfig, build_seed, split_heldout
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
    args = ap.parse_args(argv)

    cfg: SeedConfig = load_section("seed", args.params)
    result = split_heldout(build_seed(cfg), cfg.heldout, cfg.seed)
    write_parquet(result.kept, args.out)
    write_parquet(result.heldout, args.heldout)
    write_parquet(result.rejected, args.rejected)
    write_json(result.metrics, args.metrics)
    log.info("kept %d seed pairs, held out %d, rejected %d %s", result.kept.height, result.heldout.height,
             result.rejected.height, result.metrics["rejected"])


if __name__ == "__main__":
    main()
