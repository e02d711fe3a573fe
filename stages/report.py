"""Stage report: plot data, a PNG and an HTML page over all models and iterations, a page to browse the
candidate pairs, and the headline numbers."""

import argparse
from pathlib import Path

from humpback.config import load_section
from humpback.evaluation.headline import headline, write_headline
from humpback.evaluation.report import ReportPaths, build_report
from humpback.stage import stage


@stage
def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", required=True)
    ap.add_argument("--eval-metrics", type=Path, required=True, help="directory of <model>.json win rates")
    ap.add_argument("--curation-metrics", type=Path, required=True, help="directory of <iteration>.json selections")
    ap.add_argument("--seed", type=Path, required=True, help="the seed pairs, Parquet")
    ap.add_argument("--curated", type=Path, required=True, help="directory of <iteration>.parquet curated pairs")
    ap.add_argument("--plots", type=Path, required=True, help="directory for DVC plot data")
    ap.add_argument("--report", type=Path, required=True, help="directory for report.png and index.html")
    ap.add_argument("--curation-quality", type=Path, required=True, help="curation precision/recall, JSON")
    ap.add_argument("--scores", type=Path, required=True, help="directory of <iteration>.json score statistics")
    ap.add_argument("--candidates", type=Path, required=True, help="augment's candidate pairs, Parquet")
    ap.add_argument("--rejected", type=Path, required=True, help="augment's rejected instructions, Parquet")
    ap.add_argument("--scored", type=Path, required=True, help="directory of <iteration>.parquet scored candidates")
    ap.add_argument("--headline", type=Path, required=True, help="directory for the headline numbers (dvc metrics)")
    args = ap.parse_args(argv)
    cfg = load_section("eval", args.params)
    iterations = list(load_section("iterations", args.params))
    paths = ReportPaths(eval_metrics=args.eval_metrics, curation_metrics=args.curation_metrics, seed=args.seed,
                        curated=args.curated, plots=args.plots, report=args.report,
                        curation_quality=args.curation_quality, candidates=args.candidates,
                        rejected=args.rejected, scored=args.scored)
    build_report(cfg.models, iterations, paths, labels=cfg.curation_labels, id_column=cfg.curation_id_column,
                 label_threshold=cfg.curation_label_threshold)
    write_headline(headline(cfg.models, iterations, args.eval_metrics, args.curation_metrics, args.scores),
                   args.headline)


if __name__ == "__main__":
    main()
