"""Data-scaling curves: fit w = alpha * ln(N) + C to (N examples, win rate) points.

The paper compares how fast win rate grows with data size across data sources (alpha = 6.95 for
Humpback's curated data against 2.86 for LIMA and 4.43 for OASST). The points come from DVC
experiments that vary `iterations.it2.select.sample` (scripts/scaling.sh); `collect` reads them out of
`dvc exp show --json`, `fit` fits the curve.

    python -m humpback.evaluation.scaling collect exps.json --out metrics/scaling.json
    python -m humpback.evaluation.scaling fit metrics/scaling.json --out metrics/scaling_fit.json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from humpback.errors import HumpbackError, InputError
from humpback.io import write_json


def fit_scaling(n: Sequence[float], win_rates: Sequence[float]) -> dict:
    """Least-squares fit of win_rate = alpha * ln(N) + C; r2 is the coefficient of determination."""
    x, y = np.asarray(n, dtype=float), np.asarray(win_rates, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError("N and win rates must be flat sequences of the same length")
    if np.any(x <= 0) or not np.all(np.isfinite(x)) or not np.all(np.isfinite(y)):
        raise ValueError("N must be positive and every value finite")
    if np.unique(x).size < 2:
        raise ValueError("need points at two or more distinct N")
    lx = np.log(x)
    alpha, c = np.polyfit(lx, y, 1)
    residual = float(np.sum((y - (alpha * lx + c)) ** 2))
    total = float(np.sum((y - y.mean()) ** 2))
    return {"alpha": float(alpha), "C": float(c), "r2": 1.0 - residual / total if total > 0 else 1.0,
            "n_points": int(x.size), "log": "natural"}


def get_path(tree: dict, dotted: str):
    for key in dotted.split("."):
        if not isinstance(tree, dict) or key not in tree:
            return None
        tree = tree[key]
    return tree


def exp_revs(entries: list) -> Iterator[dict]:
    """Every commit and experiment rev in `dvc exp show --json`, workspace included."""
    for entry in entries:
        yield entry
        for exp in entry.get("experiments") or []:
            yield from exp_revs(exp.get("revs") or [])


def collect_points(
    exp_show: list,
    *,
    param: str = "iterations.it2.select.sample",
    params_file: str = "params.yaml",
    metric_file: str = "metrics/headline/it2.json",
    metric: str = "win",
    include_workspace: bool = False,
) -> list[dict]:
    """(N, win rate) of every rev that has both; queued, failed and baseline-only revs are skipped.

    The workspace row repeats the last experiment applied to it, so it is left out by default."""
    if not isinstance(exp_show, list):
        raise ValueError("expected the list printed by `dvc exp show --json`")
    points, seen = [], set()
    for rev in exp_revs(exp_show):
        if rev.get("rev") == "workspace" and not include_workspace:
            continue
        data = rev.get("data") or {}
        n = get_path((data.get("params") or {}).get(params_file, {}).get("data", {}), param)
        w = get_path((data.get("metrics") or {}).get(metric_file, {}).get("data", {}), metric)
        if not isinstance(n, (int, float)) or isinstance(n, bool) or n <= 0 or not isinstance(w, (int, float)):
            continue
        key = data.get("rev") or rev.get("rev")
        if key in seen:
            continue
        seen.add(key)
        points.append({"name": rev.get("name"), "rev": key, "N": n, "win_rate": float(w)})
    return points


def _load_json(path: Path):
    if not path.is_file():
        raise InputError(path, "file not found")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise InputError(path, f"malformed JSON ({e.msg} at line {e.lineno})") from None


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m humpback.evaluation.scaling", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("collect", help="points from `dvc exp show --json` output")
    c.add_argument("exp_show", type=Path)
    c.add_argument("--param", default="iterations.it2.select.sample")
    c.add_argument("--metric-file", default="metrics/headline/it2.json")
    c.add_argument("--metric", default="win")
    c.add_argument("--out", type=Path, default=Path("metrics/scaling.json"))
    f = sub.add_parser("fit", help="fit w = alpha * ln(N) + C to a points file")
    f.add_argument("points", type=Path, help="JSON list of {N, win_rate}")
    f.add_argument("--out", type=Path, default=None, help="write the fit here as JSON (default: print only)")
    args = ap.parse_args(argv)
    try:
        if args.cmd == "collect":
            try:
                points = collect_points(_load_json(args.exp_show), param=args.param,
                                        metric_file=args.metric_file, metric=args.metric)
            except ValueError as e:
                raise InputError(args.exp_show, str(e)) from None
            if not points:
                raise InputError(args.exp_show, f"no rev has both {args.param} and {args.metric} in {args.metric_file}")
            write_json(points, args.out)
            print(f"{len(points)} points -> {args.out}")
            return
        points = _load_json(args.points)
        if not isinstance(points, list) or not all(isinstance(p, dict) and "N" in p and "win_rate" in p for p in points):
            raise InputError(args.points, "expected a JSON list of {N, win_rate}")
        try:
            fit = fit_scaling([p["N"] for p in points], [p["win_rate"] for p in points])
        except (ValueError, TypeError) as e:
            raise InputError(args.points, str(e)) from None
        if args.out:
            write_json({**fit, "points": points}, args.out)
        print(f"w = {fit['alpha']:.3f} * ln(N) + {fit['C']:.3f}   (r2 = {fit['r2']:.3f}, {fit['n_points']} points)")
    except HumpbackError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
