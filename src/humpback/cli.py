"""`humpback` command: small utilities around the DVC pipeline."""

from __future__ import annotations

import argparse
import sys

from humpback.errors import HumpbackError


def _check_params(args: argparse.Namespace) -> None:
    from humpback.config import validate_all

    sections = validate_all(args.params)
    print(f"{args.params}: ok ({len(sections)} sections: {', '.join(sections)})")


def _preset(args: argparse.Namespace) -> None:
    from humpback.config import apply_preset

    sections = apply_preset(args.preset, args.params)
    print(f"{args.params}: applied {args.preset} ({', '.join(sections)})")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="humpback", description=__doc__)
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("check-params", help="validate every section of a params file")
    p.add_argument("params", nargs="?", default="params.yaml")
    p.set_defaults(fn=_check_params)
    p = sub.add_parser("preset", help="overlay a preset (a partial params file) onto params.yaml")
    p.add_argument("preset", help="e.g. configs/tiny.yaml or configs/paper.yaml")
    p.add_argument("--params", default="params.yaml")
    p.set_defaults(fn=_preset)
    args = ap.parse_args(argv)
    try:
        args.fn(args)
    except HumpbackError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
