"""Stage length_controlled: the AlpacaEval 2 length-controlled win rate of every model, one joint GLM.

Reads the judgements of every model in eval.models (<--judgements>/<model>.parquet, written by
judge@<model>: prompt_id, preference, length, reference_length) and fits
humpback.evaluation.length_controlled over all of them at once, so the instruction difficulties are
shared. Writes {"formula", "reference", "regularization", "instructions", "models": {<model>:
{"lc_win_rate", "win_rate", "model_coef", "length_coef", "n"}}, "difficulty": {<prompt_id>: psi}}.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from humpback import ledger
from humpback.config import load_section
from humpback.errors import InputError
from humpback.evaluation.length_controlled import COLUMNS, FORMULA, bad_row, fit_length_controlled
from humpback.io import write_json
from humpback.readers import read_table
from humpback.stage import stage

log = logging.getLogger("humpback.length_controlled")


@stage
def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", required=True)
    ap.add_argument("--judgements", required=True, help="the judge stages' directory, data/eval/judgements")
    ap.add_argument("--out", required=True, help="the length-controlled win rates, JSON")
    args = ap.parse_args(argv)
    cfg = load_section("eval", args.params)
    reference = Path(load_section("judge", args.params).reference).stem

    judgements = {}
    for m in cfg.models:
        path = Path(args.judgements) / f"{m}.parquet"
        df = read_table(path, list(COLUMNS), missing=f"file not found (has judge@{m} run?)").select(COLUMNS)
        if (problem := bad_row(df)) is not None:
            raise InputError(path, problem[1], problem[0])
        judgements[m] = df
    fit = fit_length_controlled(judgements, regularization=cfg.lc_regularization)
    ledger.add_examples(sum(df.height for df in judgements.values()))
    models = {m: {k: v for k, v in r.items() if k != "lc_preferences"} for m, r in fit["models"].items()}
    write_json({"formula": FORMULA, "reference": reference, "regularization": cfg.lc_regularization,
                "instructions": fit["instructions"], "models": models, "difficulty": fit["difficulty"]}, args.out)
    for m, r in models.items():
        log.info("%s vs %s: LC win rate %.1f (raw %.1f, length slope %.2f)", m, reference, r["lc_win_rate"],
                 r["win_rate"], r["length_coef"])


if __name__ == "__main__":
    main()
