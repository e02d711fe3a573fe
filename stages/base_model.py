"""Stage base_model: materialise models/base from `base_model` in params.yaml."""

import argparse

from humpback.config import load_section
from humpback.models import prepare_base
from humpback.stage import stage


@stage
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--out", default="models/base")
    args = ap.parse_args()
    prepare_base(load_section("base_model", args.params), args.out)


if __name__ == "__main__":
    main()
