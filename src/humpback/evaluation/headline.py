"""The headline numbers: the few that `dvc metrics show` and `dvc exp show` display.

One small file per model (`<model>.json`) and one for the judge's own check (`judge.json`) under
metrics/headline/, every file with the same short keys, so `dvc metrics show` is one row per model
in under 120 columns:

    win     win rate against the reference, percent      lo, hi   its 95% interval (paired bootstrap)
    lc      length-controlled win rate (joint fit)        nll      held-out NLL per answer token
    pairs   the iteration's candidates (itN only)         kept     pairs it kept
    score   mean self-curation score of its candidates
    disc, order, ok   the judge check: discrimination, order consistency, trustworthy (judge.json)

Everything else (histograms, training statistics, the judge's per-degradation rates) stays in the
JSON files the report and plots read; dvc.yaml declares those as plain outputs, not metrics.
"""

from __future__ import annotations

from pathlib import Path

from humpback.errors import ConfigError
from humpback.io import write_json
from humpback.readers import read_json

MODEL_KEYS = ("win", "lo", "hi", "lc", "nll")
ITERATION_KEYS = ("pairs", "kept", "score")
JUDGE_KEYS = ("disc", "order", "ok")


def _round(value, digits: int):
    return round(float(value), digits) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _optional(path: Path) -> dict:
    return read_json(path, "file not found (its stage has not run)") if path.is_file() else {}


def model_row(name: str, eval_dir: Path, lc_models: dict) -> dict:
    m = read_json(eval_dir / f"{name}.json", "file not found (its judge stage has not run)")
    return {
        "win": _round(m.get("win_rate"), 1),
        "lo": _round(m.get("ci_low"), 1),
        "hi": _round(m.get("ci_high"), 1),
        "lc": _round((lc_models.get(name) or {}).get("lc_win_rate"), 1),
        "nll": _round(m.get("heldout_nll"), 3),
    }


def iteration_row(name: str, curation_dir: Path, scores_dir: Path) -> dict:
    cur = read_json(curation_dir / f"{name}.json", "file not found (its select stage has not run)")
    scores = read_json(scores_dir / f"{name}.json", "file not found (its score stage has not run)")
    return {"pairs": cur.get("n"), "kept": cur.get("kept"), "score": _round(scores.get("mean"), 2)}


def judge_row(eval_dir: Path) -> dict:
    check = _optional(eval_dir / "judge_check.json")
    return {"disc": _round(check.get("discrimination"), 2), "order": _round(check.get("order_consistency"), 2),
            "ok": check.get("trustworthy")}


def headline(models: list[str], iterations: list[str], eval_dir: Path, curation_dir: Path,
             scores_dir: Path) -> dict[str, dict]:
    """File stem -> its numbers. A model that is also an iteration gets that iteration's numbers."""
    if "judge" in models or "judge" in iterations:
        raise ConfigError("a model or iteration named 'judge' would share metrics/headline/judge.json "
                          "with the judge check: rename it")
    lc_models = _optional(eval_dir / "length_controlled.json").get("models") or {}
    rows = {name: model_row(name, eval_dir, lc_models) for name in models}
    for it in iterations:
        rows.setdefault(it, {}).update(iteration_row(it, curation_dir, scores_dir))
    rows["judge"] = judge_row(eval_dir)
    return rows


def write_headline(rows: dict[str, dict], directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.json"):
        if stale.stem not in rows:
            stale.unlink()  # a model dropped from eval.models leaves no row behind
    for name, row in rows.items():
        write_json({k: v for k, v in row.items() if v is not None}, directory / f"{name}.json")
