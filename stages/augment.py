"""Stage augment: the backward model writes one candidate instruction per web segment.

Reads data/prepared/segments.parquet (segment_id, text, header, doc_id) and models/backward;
writes data/augmented/candidates.parquet (segment_id, instruction, output, header, doc_id), the
degenerate instructions with their reason to data/augmented/rejected.parquet, and metrics/augment.json.
Resumable: re-running after a crash continues from the last finished chunk.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from humpback.augment import AugmentConfig, run_augment
from humpback.config import load_section
from humpback.engines import loader
from humpback.errors import InputError
from humpback.stage import stage

log = logging.getLogger("humpback.augment")


@stage
def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--segments", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--rejected", required=True)
    ap.add_argument("--metrics", required=True)
    args = ap.parse_args(argv)

    cfg: AugmentConfig = load_section("augment", args.params)
    prompts = load_section("prompts", args.params)
    model = Path(args.model)
    if not model.exists():
        raise InputError(model, "backward model not found (run the train_backward stage first)")
    engine_cfg = load_section("engine", args.params)  # opens the model and is fingerprinted: one object
    with loader.load_engine(model, engine_cfg) as engine:
        m = run_augment(args.segments, engine, cfg, prompts, candidates_path=args.out,
                        rejected_path=args.rejected, metrics_path=args.metrics,
                        engine_cfg=engine_cfg, model_dir=model)
    log.info("kept %d of %d candidate instructions; rejected %s", m["kept"], m["segments_in"], m["rejected_by_reason"])


if __name__ == "__main__":
    main()
