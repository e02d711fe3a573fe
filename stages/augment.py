"""Stage augment: the backward model writes one candidate instruction per web segment.

Reads data/prepared/segments.parquet (segment_id, text, header, doc_id) and models/backward;
writes data/augmented/candidates.parquet (segment_id, instruction, output, header, doc_id), the
degenerate instructions with their reason to data/augmented/rejected.parquet, and metrics/augment.json.
An instruction that copies an eval prompt (`--eval-prompts`) or is in another language than its
segment is rejected too.
Resumable: re-running after a crash continues from the last finished chunk.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from humpback.augment import AugmentConfig, run_augment
from humpback.config import load_section
from humpback.decontamination import eval_texts_if_present
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
    ap.add_argument("--eval-prompts", help="eval prompts file (params eval.prompts): a candidate instruction "
                                           "that copies one is rejected")
    args = ap.parse_args(argv)

    cfg: AugmentConfig = load_section("augment", args.params)
    prompts = load_section("prompts", args.params)
    model = Path(args.model)
    if not model.exists():
        raise InputError(model, "backward model not found (run the train_backward stage first)")
    texts = eval_texts_if_present(args.eval_prompts, load_section("eval", args.params))
    engine_cfg = load_section("engine", args.params)  # opens the model and is fingerprinted: one object
    with loader.load_engine(model, engine_cfg) as engine:
        m = run_augment(args.segments, engine, cfg, prompts, candidates_path=args.out,
                        rejected_path=args.rejected, metrics_path=args.metrics,
                        engine_cfg=engine_cfg, model_dir=model, eval_texts=texts)
    log.info("kept %d of %d candidate instructions; rejected %s", m["kept"], m["segments_in"], m["rejected_by_reason"])
    if texts is None:
        log.warning("no eval prompts file (%s): instructions were not checked against the eval prompts",
                    args.eval_prompts)


if __name__ == "__main__":
    main()
