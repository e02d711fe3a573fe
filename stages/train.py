"""Training stage: fine-tune the base model for one role of the pipeline.

  --kind backward  seed pairs reversed (output -> instruction), no tag    -> the backward model M_yx
  --kind m0        seed pairs under the seed tag                          -> M0, the first curator
  --kind forward   seed (seed tag) + --curated pairs (augmented tag)      -> M1, M2, ...

A backward run reads the train section with the backward section's `train:` keys on top (2 epochs
by default). A forward run reads the train and mix sections as its --iteration sees them (the iteration's
overrides on top): mix.seed false leaves the seed pairs out; a curated table that select@ drew
with select.sample N > 0 trains, under mix.scaling_steps, for the paper's steps at its batch size
for N (Table 18).

Always fine-tunes the base model (models/base), as the paper does. Writes the adapter or checkpoint
to --out, the run's numbers to metrics/train/<name of --out>.json and, with --curves, the loss,
learning rate and gradient norm of every logged step to metrics/train/curves/<name of --out>/
(dvclive files that `dvc plots show` draws). Runs the same under
`accelerate launch --config_file configs/accelerate/<ddp|fsdp|deepspeed_zero3>.yaml stages/train.py ...`.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
from pathlib import Path

import polars as pl
import torch.distributed as dist

from humpback import ledger
from humpback.config import load_section
from humpback.errors import ConfigError, EmptyResultError
from humpback.io import write_json
from humpback.readers import is_parquet
from humpback.stage import stage
from humpback.training.config import MixConfig, TrainConfig
from humpback.training.data import KINDS, build_examples, read_pairs
from humpback.training.schedule import scaling_row
from humpback.training.trainer import train_model

log = logging.getLogger("humpback.train")


def _sample_size(curated: str) -> int:
    """N when select@ drew a random N of the curated pairs (select.sample), else 0. select@ records
    N in the table's Parquet metadata (curation.selection.SAMPLE_KEY): the number belongs to the
    data, and a new N reaches this stage through the table it already depends on."""
    if not is_parquet(Path(curated)):
        return 0
    return int(pl.read_parquet_metadata(curated).get("humpback.sample", 0))


def _for_data_size(cfg: TrainConfig, mix: MixConfig, n: int) -> tuple[TrainConfig, dict | None]:
    """The paper's batch size and steps for N curated pairs (Table 18) when N > 0 and
    mix.scaling_steps; else the train section as it is."""
    if n <= 0 or not mix.scaling_steps:
        return cfg, None
    row = scaling_row(n)
    cfg = dataclasses.replace(cfg, batch_size=row.batch_size, small_data_batch_size=row.batch_size,
                              max_steps=row.max_steps)
    return cfg, {"n": n, "table_n": row.n, "batch_size": row.batch_size, "max_steps": row.max_steps}


def _curated(path: str, *, with_seed: bool) -> pl.DataFrame:
    """The curated pairs. An empty table got past select@ only with select.allow_empty: true; with
    the seed pairs there is still data, so the model learns from the seed alone (said in the log)."""
    try:
        return read_pairs(path, "curated pairs")
    except EmptyResultError:
        if not with_seed:
            raise
        log.warning("%s: no curated pairs (select.allow_empty); training on the seed pairs alone", path)
        return pl.DataFrame(schema={"instruction": pl.String, "output": pl.String})


@stage
def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kind", choices=KINDS, required=True)
    ap.add_argument("--out", required=True, help="model directory to write, e.g. models/m0")
    ap.add_argument("--curated", help="curated pairs (forward only), e.g. data/curated/it1.parquet")
    ap.add_argument("--seed-data", required=True)
    ap.add_argument("--base", required=True)
    ap.add_argument("--params", required=True)
    ap.add_argument("--metrics", required=True, help="the run's numbers, JSON")
    ap.add_argument("--curves", help="directory for the training curves (dvclive), e.g. metrics/train/curves/m0")
    ap.add_argument("--iteration", help="forward only: the iteration whose params overrides apply, e.g. it2")
    args = ap.parse_args(argv)
    if (args.kind == "forward") != bool(args.curated):
        raise ConfigError("--curated is required for --kind forward and only for it")
    if args.iteration and args.kind != "forward":
        raise ConfigError("--iteration is for --kind forward only")

    mix = None
    if args.kind == "forward":
        cfg = load_section("train", args.params, iteration=args.iteration)
        mix = load_section("mix", args.params, iteration=args.iteration)
    else:
        # the backward model reads train with the backward section's keys on top; m0 reads train as written
        cfg = load_section("train", args.params, backward=args.kind == "backward")
    prompts = load_section("prompts", args.params)
    seed = read_pairs(args.seed_data, "seed pairs")
    curated = _curated(args.curated, with_seed=mix is None or mix.seed) if args.curated else None
    extra = {}
    if mix is not None:
        cfg, scaling = _for_data_size(cfg, mix, _sample_size(args.curated))
        extra = {"iteration": args.iteration, "mix": dataclasses.asdict(mix), "scaling": scaling}
    examples = build_examples(args.kind, prompts, seed, curated, args.seed_data, args.curated or "",
                              with_seed=mix.seed if mix is not None else True)

    metrics = train_model(examples, args.base, args.out, cfg, curves=args.curves)
    metrics = {"kind": args.kind, "base": args.base, **extra, **metrics}
    # every epoch reads the training tokens again (padding is not counted); nothing is generated
    ledger.note_engine("transformers")
    ledger.add_tokens(round(metrics["tokens"] * metrics["epochs"]), 0)
    ledger.add_examples(round(metrics["examples"] * metrics["epochs"]))
    # only the main process writes the metrics
    if not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0:
        write_json(metrics, args.metrics)
        log.info("%s: %d examples, %d steps, loss %.3f -> %.3f, %.0f tokens/s", args.out, metrics["examples"],
                 metrics["steps"], metrics["train_loss_first"] or 0, metrics["train_loss_last"] or 0,
                 metrics["tokens_per_s"] or 0)


if __name__ == "__main__":
    main()
