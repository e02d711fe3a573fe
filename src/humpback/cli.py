"""`humpback` command: small utilities around the DVC pipeline."""

from __future__ import annotations

import argparse
import sys

from humpback.errors import HumpbackError


def _check_params(args: argparse.Namespace) -> None:
    """Every problem of the file, one `error:` line each (exit status 2), or one `ok` line."""
    from humpback.config import ParamsError, validate_all

    try:
        sections = validate_all(args.params)
    except ParamsError as e:
        for problem in e.problems:
            print(f"error: {problem}", file=sys.stderr)
        raise SystemExit(2) from None
    print(f"{args.params}: ok ({len(sections)} sections: {', '.join(sections)})")


def _doctor(args: argparse.Namespace) -> None:
    """One line per check; exit status 1 when one failed, 2 when the params file does not validate."""
    import time

    from humpback import doctor
    from humpback.config import ParamsError

    start = time.perf_counter()
    try:
        findings = doctor.run_checks(args.params)
    except ParamsError as e:
        for problem in e.problems:
            print(f"error: {problem}", file=sys.stderr)
        raise SystemExit(2) from None
    doctor.show(findings, seconds=time.perf_counter() - start)
    raise SystemExit(doctor.exit_code(findings))


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


def _ablations(args: argparse.Namespace) -> None:
    from pathlib import Path

    from humpback import ablations
    from humpback.config import load_section

    scaling = tuple(int(n) for n in args.scaling.split(",") if n.strip()) if args.scaling else ()
    grid = ablations.variants(args.params, scaling)
    if args.only:
        wanted = set(args.only.split(","))
        unknown = wanted - {v.name for v in grid}
        if unknown:
            raise SystemExit(f"error: unknown variant(s) {', '.join(sorted(unknown))}; known: "
                             f"{', '.join(v.name for v in grid)}")
        grid = [v for v in grid if v.name in wanted]
    if args.action == "list":
        for v in grid:
            print(f"{v.name:22} {ablations.command(v)}\n{'':22} {v.paper}")
        return
    base = ablations.preset_overrides(args.preset) if args.preset else ()
    base += tuple(args.set or ())
    log = ablations.run(grid, base, queue=args.queue) if args.action == "run" else None
    if args.queue:
        print("queued; run them with `dvc queue start`, then `humpback ablations table`")
        return
    last = ablations.last_iteration(load_section("iterations", args.params))
    rows = ablations.collect(grid, last, Path(args.out), log)
    print(ablations.markdown(rows, last), end="")
    failed = [e["variant"] for e in log or [] if e["status"] == "failed"]
    if failed:
        for e in log:
            if e["status"] == "failed":
                print(f"--- {e['variant']} failed:\n{e['error']}", file=sys.stderr)
        raise SystemExit(1)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="humpback", description=__doc__)
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("check-params", help="validate every section of a params file")
    p.add_argument("params", nargs="?", default="params.yaml")
    p.set_defaults(fn=_check_params)
    p = sub.add_parser("doctor", help="check a params file and the models it names before a long run")
    p.add_argument("params", nargs="?", default="params.yaml")
    p.set_defaults(fn=_doctor)
    p = sub.add_parser("preset", help="overlay a preset (a partial params file) onto params.yaml")
    p.add_argument("preset", help="e.g. configs/tiny.yaml or configs/paper.yaml")
    p.add_argument("--params", default="params.yaml")
    p.set_defaults(fn=_preset)
    p = sub.add_parser("stage-deps", help="compare each dvc.yaml stage's code deps with its command's imports")
    p.add_argument("--fix", action="store_true", help="rewrite the code deps of dvc.yaml to the import closures")
    p.set_defaults(fn=_stage_deps)
    p = sub.add_parser("ablations", help="the paper's ablations as DVC experiments, and their comparison table")
    p.add_argument("action", choices=["list", "run", "table"])
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--preset", help="a preset laid under every variant as -S overrides, e.g. configs/tiny.yaml")
    p.add_argument("--set", action="append", help="another -S override for every variant (repeatable)")
    p.add_argument("--only", help="comma-separated variant names (default: all)")
    p.add_argument("--scaling", help="comma-separated N for the data-scaling variants, e.g. 100,800,1600")
    p.add_argument("--queue", action="store_true", help="queue the experiments instead of running them")
    p.add_argument("--out", default="metrics/ablations", help="table path without suffix (.md and .json)")
    p.set_defaults(fn=_ablations)
    args = ap.parse_args(argv)
    try:
        args.fn(args)
    except HumpbackError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
