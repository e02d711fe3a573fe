"""Stage generate@<model>: answer the eval prompts with one model (nucleus sampling, fixed seed).

Writes the answers (prompt_id, category, instruction, output, generator) to --out, resumable in
chunks, and the same answers in AlpacaEval's model_outputs.json format to --alpaca.
"""

import argparse

from humpback.config import load_section
from humpback.engines import loader
from humpback.evaluation.generate import alpaca_records, generate_answers
from humpback.evaluation.inputs import load_prompts, subset
from humpback.evaluation.loading import model_dir
from humpback.io import write_json
from humpback.stage import stage


@stage
def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", required=True)
    ap.add_argument("--model", required=True, help="the model directory, e.g. models/it1")
    ap.add_argument("--name", required=True, help="the generator's name in the outputs (it1)")
    ap.add_argument("--prompts", required=True, help="eval prompts (JSONL, Parquet or AlpacaEval JSON)")
    ap.add_argument("--out", required=True, help="answers, Parquet")
    ap.add_argument("--alpaca", required=True, help="the AlpacaEval export, JSON")
    args = ap.parse_args(argv)
    cfg = load_section("eval", args.params)

    prompts = load_prompts(args.prompts, instruction_column=cfg.instruction_column,
                           id_column=cfg.id_column, category_column=cfg.category_column)
    prompts = subset(prompts, cfg.max_prompts)

    engine_cfg = load_section("engine", args.params)  # opens the model and is fingerprinted: one object
    with loader.load_engine(model_dir(args.model), engine_cfg) as engine:
        outputs = generate_answers(engine, prompts, args.out, cfg=cfg, prompts_cfg=load_section("prompts", args.params),
                                   engine_cfg=engine_cfg, model_dir=args.model, generator=args.name)
    write_json(alpaca_records(outputs), args.alpaca)


if __name__ == "__main__":
    main()
