"""Stage cost: merge every stage's compute entry (metrics/cost/<stage>.json) into metrics/cost.json.

Each entry is an out of the stage it describes, written by the stage wrapper when that stage ran
(humpback.ledger): a stage DVC restored from its cache keeps the entry of the run that made it.
Writes the per-stage entries with the totals per device type and overall (humpback.cost).
"""

import argparse
import logging

from humpback.cost import merge_dir
from humpback.io import write_json
from humpback.stage import stage

log = logging.getLogger("humpback.cost")


@stage(cost=False)  # its dep is the entries' directory: an entry of its own there would change its dep
def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entries", required=True, help="the stages' entries, metrics/cost")
    ap.add_argument("--out", required=True, help="the merged ledger, metrics/cost.json")
    args = ap.parse_args(argv)
    ledger = merge_dir(args.entries)
    write_json(ledger, args.out)
    t = ledger["totals"]
    log.info("%d stages: %.0f s, %d tokens in, %d tokens out, %d examples", t["stages"], t["seconds"],
             t["tokens_in"], t["tokens_out"], t["examples"])


if __name__ == "__main__":
    main()
