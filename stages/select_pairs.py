"""Stage select@<iteration>: keep the candidate pairs scored at or above select.threshold.

(Named select_pairs.py: a script called select.py would shadow the stdlib `select` module for
every script run from stages/.)

Reads data/scores/<iteration>.parquet; writes data/curated/<iteration>.parquet (instruction,
output, segment_id, score) and metrics/curation/<iteration>.json.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from humpback.config import load_section
from humpback.curation.config import SelectConfig
from humpback.curation.selection import run_select
from humpback.stage import stage

log = logging.getLogger("humpback.select")


@stage
def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iteration", required=True, help="iteration name (it1, it2, ...)")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--scores-dir", default="data/scores")
    ap.add_argument("--out-dir", default="data/curated")
    ap.add_argument("--metrics-dir", default="metrics/curation")
    args = ap.parse_args(argv)

    cfg: SelectConfig = load_section("select", args.params)
    m = run_select(Path(args.scores_dir) / f"{args.iteration}.parquet", cfg,
                   curated_path=Path(args.out_dir) / f"{args.iteration}.parquet",
                   metrics_path=Path(args.metrics_dir) / f"{args.iteration}.json")
    log.info("kept %d of %d pairs (%.1f%%) at threshold %g", m["kept"], m["n"], 100 * m["kept_share"], m["threshold"])


if __name__ == "__main__":
    main()
