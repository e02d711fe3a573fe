"""Stage select@<iteration>: keep the candidate pairs scored at or above select.threshold.

The select section as this iteration sees it (`iterations.<iteration>.select` over its keys):
select.curate false keeps every candidate, select.sample N > 0 draws N of the kept pairs at random.

(Named select_pairs.py: a script called select.py would shadow the stdlib `select` module for
every script run from stages/.)

Reads data/scores/<iteration>.parquet; writes data/curated/<iteration>.parquet (instruction,
output, segment_id, score) and metrics/curation/<iteration>.json.
"""

from __future__ import annotations

import argparse
import logging

from humpback import ledger
from humpback.config import load_section
from humpback.curation.config import SelectConfig
from humpback.curation.selection import run_select
from humpback.stage import stage

log = logging.getLogger("humpback.select")


@stage
def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", required=True)
    ap.add_argument("--scores", required=True, help="the scored candidates, Parquet")
    ap.add_argument("--out", required=True, help="the kept pairs, Parquet")
    ap.add_argument("--metrics", required=True, help="selection statistics, JSON")
    ap.add_argument("--iteration", help="the iteration whose params overrides apply, e.g. it2")
    args = ap.parse_args(argv)

    cfg: SelectConfig = load_section("select", args.params, iteration=args.iteration)
    m = run_select(args.scores, cfg, curated_path=args.out, metrics_path=args.metrics)
    ledger.add_examples(m["n"])
    how = f"at threshold {cfg.threshold:g}" if cfg.curate else "without curation"
    how += f", a random {cfg.sample} of them" if cfg.sample else ""
    log.info("kept %d of %d pairs (%.1f%%) %s", m["kept"], m["n"], 100 * m["kept_share"], how)


if __name__ == "__main__":
    main()
