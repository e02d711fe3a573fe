"""Stage generate@<model>: answer the eval prompts with models/<model> (nucleus sampling, fixed seed)."""

import argparse
from pathlib import Path

from humpback.config import load_section
from humpback.engines.base import Sampling
from humpback.evaluation import loading
from humpback.evaluation.generate import alpaca_records, generate_answers
from humpback.evaluation.inputs import load_prompts, subset
from humpback.io import write_json
from humpback.stage import stage


@stage
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", required=True, help="model name under models/ (base, m0, it1, ...)")
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args()
    cfg = load_section("eval", args.params)
    system = load_section("prompts", args.params).inference_system_prompt()

    prompts = load_prompts(cfg.prompts, instruction_column=cfg.instruction_column,
                           id_column=cfg.id_column, category_column=cfg.category_column)
    prompts = subset(prompts, cfg.max_prompts)
    sampling = Sampling(temperature=cfg.temperature, top_p=cfg.top_p, max_new_tokens=cfg.max_new_tokens, seed=cfg.seed)

    with loading.load_model_engine(loading.model_dir(args.model), args.params) as engine:
        outputs = generate_answers(engine, prompts, Path("data/eval/outputs") / f"{args.model}.parquet",
                                   system=system, sampling=sampling, generator=args.model, chunk_size=cfg.chunk_size)
    write_json(alpaca_records(outputs), Path("data/eval/alpaca") / f"{args.model}.json")


if __name__ == "__main__":
    main()
