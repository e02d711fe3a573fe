"""Corpus stage: cut the unlabelled documents named in params `corpus:` into header segments, filter and dedup them.

Writes data/prepared/segments.parquet (segment_id, source, doc_id, url, header, level, position, text,
n_chars), every rejected segment or document with its `reason` to data/prepared/rejected.parquet, and
the counts per reason, documents and segments in/kept and the time taken to metrics/corpus.json.
A segment that shares a long word n-gram with an eval prompt or reference answer (`--eval-prompts`)
is rejected as `contaminated`, one in another language than `corpus.languages` as `language`.
"""

from __future__ import annotations

import argparse
import logging

from humpback import ledger
from humpback.config import load_section
from humpback.corpus import CorpusConfig, prepare_corpus
from humpback.decontamination import eval_texts_if_present
from humpback.io import write_json
from humpback.stage import stage

log = logging.getLogger("humpback.corpus")


@stage
def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--rejected", required=True)
    ap.add_argument("--metrics", required=True)
    ap.add_argument("--eval-prompts", help="eval prompts file (params eval.prompts): no kept segment may share "
                                           "a long n-gram with a prompt or its reference answer")
    args = ap.parse_args(argv)

    cfg: CorpusConfig = load_section("corpus", args.params)
    texts = None
    if cfg.decontamination.ngram > 0:
        texts = eval_texts_if_present(args.eval_prompts, load_section("eval", args.params),
                                      references=cfg.decontamination.references)
    timings: dict = {}  # logged, not written: the metrics file's bytes must not depend on the machine's speed
    metrics = prepare_corpus(cfg, args.out, args.rejected, timings=timings, eval_texts=texts)
    write_json(metrics, args.metrics)
    ledger.add_examples(metrics["segments_in"])
    if texts is None and cfg.decontamination.ngram > 0:
        log.warning("no eval prompts file (%s): segments were not checked against the eval set", args.eval_prompts)
    log.info("%d documents -> %d segments -> kept %d (%.0f segments/s); rejected %s", metrics["docs_in"],
             metrics["segments_in"], metrics["segments_kept"], timings["segments_per_second"] or 0, metrics["rejected"])


if __name__ == "__main__":
    main()
