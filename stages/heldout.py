"""Stages heldout@<model> and heldout_backward@<model>: mean NLL per reply token of the held-out
seed pairs under one model.

Reads the held-out pairs (data/prepared/heldout.parquet, written by the seed stage and trained on by
no model). --kind forward (heldout@) scores the answers, each prompted as the model is at eval time
(prompts.inference_system); --kind backward (heldout_backward@) scores the instructions, each prompted
with its answer as the backward model is (prompts.backward_template), which measures how well a
model writes the request a human text answers. Either way the tokens scored are those training
would label (reply + end-of-turn, cut at train.max_seq_len as that model's training reads it).
Writes {"heldout_nll", "heldout_ppl", "heldout_tokens", "heldout_n", "heldout_dropped", "model",
"kind"} to --out; with no held-out pairs (seed.heldout: 0) the numbers are null and the counts 0, and
no model is loaded.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from humpback import ledger
from humpback.config import load_section
from humpback.engines.transformers_engine import pick_device, pick_dtype
from humpback.evaluation.heldout import EMPTY, backward, forward, heldout_nll
from humpback.evaluation.loading import model_dir
from humpback.hardware import set_cpu_threads
from humpback.io import write_json
from humpback.models import load_model, load_tokenizer, resolve
from humpback.readers import read_table
from humpback.stage import stage
from humpback.training.data import _pairs

log = logging.getLogger("humpback.heldout")


@stage
def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", required=True)
    ap.add_argument("--model", required=True, help="the model directory, e.g. models/it1")
    ap.add_argument("--kind", choices=("forward", "backward"), default="forward",
                    help="score the answers (forward) or the instructions given the answers (backward)")
    ap.add_argument("--heldout", required=True, help="the held-out pairs, data/prepared/heldout.parquet")
    ap.add_argument("--out", required=True, help="the numbers, JSON")
    args = ap.parse_args(argv)
    name = Path(args.model).name
    # the params first: a hostile or broken params file stops the stage before it reads anything
    prompts = load_section("prompts", args.params)
    conversation = backward(prompts) if args.kind == "backward" else forward(prompts.inference_system)
    max_seq_len = load_section("train", args.params, backward=args.kind == "backward").max_seq_len
    engine = load_section("engine", args.params)

    pairs = read_table(args.heldout, ["instruction", "output"], allow_empty=True,
                       missing="file not found (has the seed stage run?)")
    _pairs(pairs, args.heldout)  # every row a non-empty instruction and output, or an error naming it
    if pairs.height == 0:
        write_json({**EMPTY, "model": name, "kind": args.kind}, args.out)
        log.info("%s: no held-out pairs (seed.heldout: 0)", name)
        return
    ref = resolve(model_dir(args.model))
    device = pick_device(engine.device)
    set_cpu_threads(engine.cpu_threads)
    model = load_model(ref, dtype=pick_dtype(engine.dtype, device), device=device, merge=True)
    ledger.note_engine("transformers")
    result = heldout_nll(model, load_tokenizer(ref), pairs, conversation, max_seq_len=max_seq_len,
                         batch_size=engine.batch_size)
    write_json({**result, "model": name, "kind": args.kind}, args.out)
    log.info("%s: held-out NLL %s per token over %d tokens of %d %s", name,
             f"{result['heldout_nll']:.4f}" if result["heldout_nll"] is not None else "n/a",
             result["heldout_tokens"], result["heldout_n"], "instructions" if args.kind == "backward" else "answers")


if __name__ == "__main__":
    main()
