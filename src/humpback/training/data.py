"""Training examples: which messages each kind of model learns from, tokenized with loss on the reply only.

kinds:  backward  the seed pairs reversed: shown an output, reply with its instruction (no tag);
        m0        the seed pairs under the seed tag;
        forward   the seed pairs (seed tag) + the curated augmented pairs (augmented tag).
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import polars as pl
import torch

from humpback import rendering
from humpback.errors import EmptyResultError, InputError
from humpback.prompts import Messages, PromptsConfig, backward_messages, forward_messages
from humpback.readers import read_table

log = logging.getLogger(__name__)

Kind = Literal["backward", "m0", "forward"]
KINDS: tuple[str, ...] = ("backward", "m0", "forward")
IGNORE = -100  # label value the loss skips


@dataclass
class Example:
    messages: Messages
    origin: str  # seed | curated


def read_pairs(path: str | Path, what: str) -> pl.DataFrame:
    """Read an (instruction, output) Parquet table; an empty one is an EmptyResultError."""
    path = Path(path)
    df = read_table(path, ["instruction", "output"], allow_empty=True, missing="file not found (has its stage run?)")
    if df.height == 0:
        raise EmptyResultError(f"{path}: no {what} to train on (the table is empty)")
    return df


def _pairs(df: pl.DataFrame, path: str) -> list[tuple[str, str]]:
    out = []
    for i, (ins, outp) in enumerate(zip(df["instruction"].to_list(), df["output"].to_list(), strict=True)):
        if not isinstance(ins, str) or not isinstance(outp, str) or not ins.strip() or not outp.strip():
            raise InputError(path, "instruction and output must be non-empty strings", i)
        out.append((ins, outp))
    return out


def build_examples(
    kind: Kind,
    prompts: PromptsConfig,
    seed: pl.DataFrame,
    curated: pl.DataFrame | None = None,
    seed_path: str = "seed",
    curated_path: str = "curated",
    *,
    with_seed: bool = True,
) -> list[Example]:
    """The chat examples for one training kind, seed first, then curated (the trainer shuffles).
    with_seed=False (forward only, mix.seed: false): the curated pairs alone, the paper's "w/o seed"."""
    if not with_seed and kind != "forward":
        raise ValueError(f"training kind {kind!r} learns from the seed pairs; with_seed=False is for forward only")
    seed_pairs = _pairs(seed, seed_path)
    if kind == "backward":
        return [Example(backward_messages(prompts, output, instruction), "seed") for instruction, output in seed_pairs]
    examples = [Example(forward_messages(prompts.seed_tag, i, o), "seed") for i, o in seed_pairs]
    if kind == "m0":
        return examples
    if kind != "forward":
        raise ValueError(f"unknown training kind {kind!r}")
    if curated is None:
        raise ValueError("forward training needs the curated pairs")
    if not with_seed:
        examples = []
    examples += [Example(forward_messages(prompts.augmented_tag, i, o), "curated") for i, o in _pairs(curated, curated_path)]
    return examples


@dataclass
class Tokenized:
    input_ids: list[int]
    labels: list[int]


@dataclass
class TokenizeStats:
    examples: int = 0
    tokens: int = 0  # all tokens of the kept examples
    loss_tokens: int = 0  # tokens the loss is computed on
    truncated: Counter = field(default_factory=Counter)  # reply | prompt
    dropped: Counter = field(default_factory=Counter)  # reason -> count


def _split(tokenizer, messages: Messages) -> tuple[list[int], list[int]]:
    """(prompt tokens, reply tokens), the reply ending with the end-of-turn token and nothing after it."""
    prompt = rendering.token_ids(tokenizer, messages[:-1], generation_prompt=True)
    full = rendering.token_ids(tokenizer, messages, generation_prompt=False)
    n = 0  # longest common prefix: equal to len(prompt) for every template with special-token boundaries
    while n < min(len(prompt), len(full)) and prompt[n] == full[n]:
        n += 1
    reply = full[n:]
    # Templates add text after the end-of-turn token (ChatML: "\n"); the model need not learn it.
    special = set(tokenizer.all_special_ids)
    ends = [i for i, t in enumerate(reply) if t in special]
    if ends:
        reply = reply[: ends[-1] + 1]
    elif tokenizer.eos_token_id is not None:
        reply = reply + [tokenizer.eos_token_id]
    return full[:n], reply


def tokenize_example(tokenizer, messages: Messages, max_seq_len: int, stats: TokenizeStats | None = None) -> Tokenized | None:
    """Tokenize one chat example; labels are IGNORE on the prompt. Returns None if it cannot fit.

    Too long: when the reply is the longer side it is cut at the end (losing its end token, as plain
    truncation does); when the prompt is (the backward model reads a whole document), the user's
    text loses its middle by the rule inference uses too (`rendering.cut_middle`), so the reply is
    learnt whole and the model sees a long text the same way when trained and when used.
    """
    stats = stats if stats is not None else TokenizeStats()
    prompt, reply = _split(tokenizer, messages)
    if len(prompt) + len(reply) > max_seq_len and len(prompt) > len(reply):
        trimmed = rendering.cut_middle(tokenizer, messages, lambda m: sum(map(len, _split(tokenizer, m))), max_seq_len)
        if trimmed is None:
            stats.dropped["reply_too_long_for_max_seq_len"] += 1
            return None
        prompt, reply = _split(tokenizer, trimmed)
        stats.truncated["prompt"] += 1
    if len(prompt) + len(reply) > max_seq_len:
        room = max_seq_len - len(prompt)
        if room <= 0:
            stats.dropped["prompt_too_long_for_max_seq_len"] += 1
            return None
        reply = reply[:room]
        stats.truncated["reply"] += 1
    stats.examples += 1
    stats.tokens += len(prompt) + len(reply)
    stats.loss_tokens += len(reply)
    return Tokenized(prompt + reply, [IGNORE] * len(prompt) + reply)


def tokenize_all(tokenizer, examples: list[Example], max_seq_len: int) -> tuple[list[Tokenized], TokenizeStats]:
    stats = TokenizeStats()
    out = [t for ex in examples if (t := tokenize_example(tokenizer, ex.messages, max_seq_len, stats)) is not None]
    if not out:
        raise EmptyResultError(f"no training example fits in train.max_seq_len={max_seq_len} tokens")
    return out, stats


class Collator:
    """Right-pad a batch: pad token in the inputs, IGNORE in the labels, 0 in the attention mask."""

    def __init__(self, pad_token_id: int):
        self.pad = pad_token_id

    def __call__(self, batch: list[Tokenized | dict]) -> dict[str, torch.Tensor]:
        rows = [(b.input_ids, b.labels) if isinstance(b, Tokenized) else (b["input_ids"], b["labels"]) for b in batch]
        width = max(len(ids) for ids, _ in rows)
        ids = torch.full((len(rows), width), self.pad, dtype=torch.long)
        labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, (x, y) in enumerate(rows):
            ids[i, : len(x)] = torch.tensor(x)
            labels[i, : len(y)] = torch.tensor(y)
            mask[i, : len(x)] = 1
        return {"input_ids": ids, "labels": labels, "attention_mask": mask}


class TokenizedDataset(torch.utils.data.Dataset):
    """A list of dicts the Trainer can index; `input_ids` also drives group_by_length."""

    def __init__(self, items: list[Tokenized]):
        self.items = [{"input_ids": t.input_ids, "labels": t.labels} for t in items]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        return self.items[i]
