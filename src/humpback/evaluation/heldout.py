"""Held-out likelihood: the mean negative log-likelihood per reply token of the held-out human pairs
(data/prepared/heldout.parquet) under one model.

A forward model is scored on the answers, each pair prompted as the model is at eval time (the
inference system prompt); the backward model on the instructions, each prompted with its answer as
the backward model is in training and in augment. Either is tokenised by the training code itself
(`training.data.tokenize_example`), in the model's chat format, so the tokens scored are exactly
those training would put the loss on: the reply and its end-of-turn token.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import polars as pl
import torch

from humpback import ledger
from humpback.prompts import Messages, PromptsConfig, backward_messages, forward_messages
from humpback.training.data import IGNORE, Collator, TokenizeStats, tokenize_example

EMPTY = {"heldout_nll": None, "heldout_ppl": None, "heldout_tokens": 0, "heldout_n": 0, "heldout_dropped": 0}

Conversation = Callable[[str, str], Messages]  # (instruction, output) -> the messages, the reply last


def forward(system: str) -> Conversation:
    """A forward model's conversation: the instruction under `system`, the answer as the reply."""
    return lambda instruction, output: forward_messages(system, instruction, output)


def backward(prompts: PromptsConfig) -> Conversation:
    """The backward model's conversation: the answer in its template, the instruction as the reply."""
    return lambda instruction, output: backward_messages(prompts, output, instruction)


def heldout_nll(model, tokenizer, pairs: pl.DataFrame, conversation: Conversation, *, max_seq_len: int,
                batch_size: int = 16) -> dict:
    """{"heldout_nll": mean NLL (nats) per reply token, "heldout_ppl", "heldout_tokens", "heldout_n"
    (pairs scored), "heldout_dropped" (pairs whose prompt leaves no room in max_seq_len)}, each pair
    made a conversation by `conversation` (`forward(system)`, `backward(prompts)`). No pairs: nulls
    and zero counts."""
    stats = TokenizeStats()
    items = [t for ins, out in zip(pairs["instruction"], pairs["output"], strict=True)
             if (t := tokenize_example(tokenizer, conversation(ins, out), max_seq_len, stats)) is not None]
    dropped = sum(stats.dropped.values())
    if not items:
        return {**EMPTY, "heldout_dropped": dropped}
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    collate = Collator(pad)
    device = next(model.parameters()).device
    total, tokens = 0.0, 0
    order = sorted(range(len(items)), key=lambda i: -len(items[i].input_ids))  # similar lengths: less padding
    with torch.inference_mode():
        for start in range(0, len(order), max(1, batch_size)):
            chunk = [items[i] for i in order[start:start + batch_size]]
            batch = collate(chunk)
            batch = {k: v.to(device) for k, v in batch.items()}
            # token t is predicted from position t - 1; only the labelled positions go through the
            # output layer (the prompt's and the padding's vocabulary-wide logits are never built)
            targets = batch["labels"][:, 1:]
            scored = targets != IGNORE
            logits = _labelled_logits(model, batch, scored)
            # the loss in float32 whatever the weights
            total += float(torch.nn.functional.cross_entropy(logits.float(), targets[scored], reduction="sum"))
            tokens += int(scored.sum())
            # every token of each sequence is read (prompt and answer), none generated
            ledger.add_tokens(sum(len(t.input_ids) for t in chunk), 0)
            ledger.add_examples(len(chunk))
    mean = total / tokens
    return {"heldout_nll": mean, "heldout_ppl": math.exp(mean), "heldout_tokens": tokens,
            "heldout_n": len(items), "heldout_dropped": dropped}


def _labelled_logits(model, batch: dict, scored: torch.Tensor) -> torch.Tensor:
    """The logits at the positions `scored` (of the inputs less the last token), one row each."""
    decoder, head = model.get_decoder(), model.get_output_embeddings()
    if decoder is None or head is None:  # an architecture without the split: the full logits
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        return logits[:, :-1][scored]
    hidden = decoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    return head(hidden[:, :-1][scored])
