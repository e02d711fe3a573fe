"""Params stage: validate the whole params file before any stage runs.

Every root stage depends on this stage's output, so DVC reproduces it first: a typo, an unknown key,
an out-of-range value or an unsafe name anywhere in params.yaml stops `dvc repro` (and `dvc exp run`)
here with one line, before DVC clears the outputs of the stage that would have read it. The output
is the same for every valid params file, so a valid change re-runs only the stages whose keys it
touches.
"""

from __future__ import annotations

import argparse

from humpback.config import validate_all
from humpback.io import write_json
from humpback.stage import stage


@stage
def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)

    validate_all(args.params)
    write_json({"valid": True}, args.out)  # constant: its hash must not change with the params


if __name__ == "__main__":
    main()
