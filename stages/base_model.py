"""Stage base_model: materialise the base model directory from `base_model` in params."""

import argparse

from humpback.config import load_section
from humpback.models import prepare_base
from humpback.stage import stage


@stage
def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", required=True)
    ap.add_argument("--out", required=True, help="the model directory to write, e.g. models/base")
    args = ap.parse_args(argv)
    prepare_base(load_section("base_model", args.params), args.out)


if __name__ == "__main__":
    main()
