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


def _stage_deps(args: argparse.Namespace) -> None:
    from humpback import stage_deps

    if args.fix:
        changed = stage_deps.fix()
        print(f"dvc.yaml: code deps rewritten for {', '.join(changed)}" if changed else "dvc.yaml: nothing to change")
    raise SystemExit(stage_deps.report())


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
    p = sub.add_parser("stage-deps", help="compare each dvc.yaml stage's code deps with its command's imports")
    p.add_argument("--fix", action="store_true", help="rewrite the code deps of dvc.yaml to the import closures")
    p.set_defaults(fn=_stage_deps)
    args = ap.parse_args(argv)
    try:
        args.fn(args)
    except HumpbackError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
