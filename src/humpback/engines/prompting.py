"""Tokenizer-side helpers shared by the local backends: chat rendering, length fitting, choice tokens."""

from __future__ import annotations

import math
from collections.abc import Sequence

from humpback.engines.base import Messages

CUT_MARK = "\n[...]\n"  # stands where the middle of an over-long user message was removed


def render(tok, messages: Messages, assistant_prefix: str = "") -> str:
    """The model's chat template with the assistant turn opened, then the reply's forced start."""
    text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return text + assistant_prefix


def _ids(tok, messages: Messages, assistant_prefix: str) -> list[int]:
    # The template already holds BOS/special tokens as text, so no second BOS is added.
    return tok(render(tok, messages, assistant_prefix), add_special_tokens=False)["input_ids"]


def encode(tok, messages: Messages, assistant_prefix: str = "", max_tokens: int = 0) -> list[int]:
    """Token ids of the rendered prompt, at most `max_tokens` long (0 = no limit).

    Too long a prompt loses the middle of its last user message: the task statement at its start
    and the request at its end survive, the long web segment or answer in between is shortened.
    If even that cannot fit (a huge system prompt), the oldest tokens are dropped.
    """
    ids = _ids(tok, messages, assistant_prefix)
    if max_tokens <= 0 or len(ids) <= max_tokens:
        return ids
    users = [i for i, m in enumerate(messages) if m.get("role") == "user"]
    k = users[-1] if users else len(messages) - 1
    content = tok(messages[k]["content"], add_special_tokens=False)["input_ids"]
    overhead = len(ids) - len(content) + len(tok(CUT_MARK, add_special_tokens=False)["input_ids"])
    keep = max_tokens - overhead
    for _ in range(3):  # decode/re-encode may shift a token or two at the seams
        if keep <= 1:
            break
        head, tail = keep - keep // 2, keep // 2
        short = tok.decode(content[:head]) + CUT_MARK + tok.decode(content[len(content) - tail :])
        trimmed = [*messages[:k], {**messages[k], "content": short}, *messages[k + 1 :]]
        ids = _ids(tok, trimmed, assistant_prefix)
        if len(ids) <= max_tokens:
            return ids
        keep -= len(ids) - max_tokens
    return ids[-max_tokens:]


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
