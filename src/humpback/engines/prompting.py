"""Tokenizer-side helpers shared by the local backends: the tokens that spell a choice, log-sum-exp.

Prompts are rendered and fitted to length by humpback.rendering (shared with training)."""

from __future__ import annotations

import math
from collections.abc import Sequence


def choice_token_ids(tok, choice: str) -> set[int]:
    """Every single token that spells `choice`, with or without a leading space ("5", " 5", "▁5")."""
    found: set[int] = set()
    for variant in (choice, " " + choice):
        ids = tok(variant, add_special_tokens=False)["input_ids"]
        if len(ids) == 1:
            found.add(ids[0])
    vocab = tok.get_vocab()
    for key in (choice, "Ġ" + choice, "▁" + choice):
        if key in vocab:
            found.add(vocab[key])
    return {t for t in found if tok.decode([t]).strip() == choice.strip()}


def choice_plan(tok, assistant_prefix: str, choices: Sequence[str]) -> tuple[str, dict[str, list[int]]]:
    """The prefix to end the prompt with, and the token ids whose probability mass is each choice.

    Tokenizers differ in whether "Score: 5" ends in " " + "5" or in ":" + " 5". When every choice has
    a space-led single token and the prefix ends in a space, that space moves into the choice token
    (the prompt ends at "Score:"), so the model sees the split it was trained on.
    """
    ids = {c: choice_token_ids(tok, c) for c in choices}

    def space_led(t: int) -> bool:
        return tok.decode([t]).startswith(" ") or tok.convert_ids_to_tokens(t)[:1] in ("Ġ", "▁")

    prefix = assistant_prefix
    if prefix.endswith(" ") and choices and all(any(space_led(t) for t in ids[c]) for c in choices):
        prefix = prefix[:-1]
    return prefix, {c: sorted(v) for c, v in ids.items()}


def logsumexp(values: Sequence[float]) -> float:
    finite = [v for v in values if v != -math.inf]
    if not finite:
        return -math.inf
    m = max(finite)
    return m + math.log(sum(math.exp(v - m) for v in finite))
