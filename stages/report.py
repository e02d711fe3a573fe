"""Stage report: plot data (metrics/plots/), a PNG and an HTML page (metrics/report/) over all models and iterations."""

import argparse

from humpback.config import load_section
from humpback.evaluation.report import build_report
from humpback.stage import stage


@stage
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args()
    cfg = load_section("eval", args.params)
    iterations = list(load_section("iterations", args.params))
    build_report(cfg.models, iterations, labels=cfg.curation_labels, id_column=cfg.curation_id_column,
                 label_threshold=cfg.curation_label_threshold)


if __name__ == "__main__":
    main()
