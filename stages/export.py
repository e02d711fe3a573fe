"""Stage export: the final curated set and its training mixture as a Hugging Face dataset folder, and
a model card for every trained model, ready to upload (nothing is uploaded here).

Reads the params, data/prepared/seed.parquet, data/curated/<iteration>.parquet (export.iteration,
default the last iteration), metrics/train, metrics/curation and metrics/eval. Writes
exports/dataset (README.md + data/<config>/train.parquet) and exports/models/<name>/README.md.
Every number in a card comes from those files; the cards carry no timestamp, so a re-run with the
same inputs writes the same bytes.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from humpback.export import dataset, model_cards
from humpback.export.facts import read_all
from humpback.export.folder import write_folder
from humpback.stage import stage

log = logging.getLogger("humpback.export")


@stage
def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", required=True)
    ap.add_argument("--seed-data", required=True, help="the seed pairs, Parquet")
    ap.add_argument("--curated", required=True, help="directory of the curated pairs, <iteration>.parquet")
    ap.add_argument("--train-metrics", required=True, help="directory of the training metrics, <model>.json")
    ap.add_argument("--curation-metrics", required=True, help="directory of the selection metrics, <iteration>.json")
    ap.add_argument("--eval-metrics", required=True, help="directory of the evaluation metrics")
    ap.add_argument("--out-dataset", required=True, help="dataset folder to write")
    ap.add_argument("--out-models", required=True, help="folder of model cards to write")
    args = ap.parse_args(argv)

    facts = read_all(args.params, Path(args.seed_data), Path(args.curated), Path(args.train_metrics),
                     Path(args.curation_metrics), Path(args.eval_metrics))
    write_folder(args.out_dataset, lambda folder: dataset.write(facts, folder))
    write_folder(args.out_models, lambda folder: model_cards.write(facts, folder))
    d = facts.dataset
    log.info("%s: %d curated pairs (%s) and a mixture of %d examples; %d model cards in %s", args.out_dataset,
             len(d.curated), d.iteration, len(d.mixture), len(facts.models), args.out_models)


if __name__ == "__main__":
    main()
