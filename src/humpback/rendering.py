"""How chat messages become a prompt: the model's chat template, or our plain format for pretrained
models, and one rule for prompts that are too long. Training and every engine render through here.

A pretrained base (the paper's LLaMA) has no chat template and often no pad token. `prepare` gives
such a tokenizer PLAIN_TEMPLATE (a system line, a user turn, an assistant turn closed by the end of
sequence token) and a pad token; the template is saved with every model trained from it, so a
model directory always carries the format it learnt.
"""

from __future__ import annotations

from collections.abc import Callable

from humpback.errors import ConfigError
from humpback.prompts import Messages

FORMATS = ("auto", "chat", "plain")
CUT_MARK = "\n[...]\n"  # stands where the middle of an over-long user message was removed

# Ours: headers a pretrained model reads as plain text; the reply ends with the EOS token, which
# the model learns in training and generation stops on. A system prompt (the tag) comes first.
PLAIN_TEMPLATE = (
    "{{ bos_token if bos_token else '' }}"
    "{% for m in messages %}"
    "{% if m['role'] == 'system' %}{{ m['content'] }}\n\n"
    "{% elif m['role'] == 'user' %}### User:\n{{ m['content'] }}\n\n"
    "{% else %}### Assistant:\n{{ m['content'] }}{{ eos_token }}\n\n"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}### Assistant:\n{% endif %}"
)


def resolve_format(tok, fmt: str) -> str:
    """`auto` is the tokenizer's own template when it has one, else ours."""
    if fmt not in FORMATS:
        raise ConfigError(f"base_model.prompt_format: '{fmt}' is not one of {', '.join(FORMATS)}")
    if fmt == "auto":
        return "chat" if getattr(tok, "chat_template", None) else "plain"
    if fmt == "chat" and not getattr(tok, "chat_template", None):
        raise ConfigError("base_model.prompt_format is 'chat' but the tokenizer has no chat template; use auto or plain")
    return fmt


def prepare(tok, fmt: str = "auto"):
    """Make `tok` ready to render and to pad: our template when the format is plain, a pad token
    (the EOS token: padding is masked, so it never teaches the model to stop early)."""
    if resolve_format(tok, fmt) == "plain":
        tok.chat_template = PLAIN_TEMPLATE
    if tok.eos_token is None:
        raise ConfigError(f"tokenizer {getattr(tok, 'name_or_path', '')!r} has no end-of-sequence token: "
                          "a model cannot learn where its reply ends")
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def render(tok, messages: Messages, *, generation_prompt: bool = True, assistant_prefix: str = "") -> str:
    """The prompt text: with the assistant turn opened (and its forced start) or the whole chat."""
    text = tok.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=generation_prompt)
    return text + assistant_prefix


def token_ids(tok, messages: Messages, *, generation_prompt: bool = True, assistant_prefix: str = "") -> list[int]:
    # The template already writes BOS and special tokens as text: no second BOS.
    text = render(tok, messages, generation_prompt=generation_prompt, assistant_prefix=assistant_prefix)
    return tok(text, add_special_tokens=False)["input_ids"]


def cut_middle(tok, messages: Messages, size: Callable[[Messages], int], budget: int) -> Messages | None:
    """The one truncation rule: shorten the middle of the last user message until `size` fits `budget`.

    The task statement at the start of the user turn and the request at its end survive; the long
    web segment or answer in between loses its middle, marked by CUT_MARK. Training and inference
    both use it, so the backward model sees a long text the same way when trained and when used.
    None when even an empty middle does not fit.
    """
    users = [i for i, m in enumerate(messages) if m.get("role") == "user"]
    if not users:
        return None
    k = users[-1]
    content = tok(messages[k]["content"], add_special_tokens=False)["input_ids"]
    mark = len(tok(CUT_MARK, add_special_tokens=False)["input_ids"])
    keep = budget - (size(messages) - len(content)) - mark
    for _ in range(4):  # decode/re-encode may shift a token or two at the seams
        if keep <= 1:
            return None
        head, tail = keep - keep // 2, keep // 2
        short = tok.decode(content[:head]) + CUT_MARK + tok.decode(content[len(content) - tail:])
        trimmed = [*messages[:k], {**messages[k], "content": short}, *messages[k + 1:]]
        excess = size(trimmed) - budget
        if excess <= 0:
            return trimmed
        keep -= excess
    return None


def encode(tok, messages: Messages, assistant_prefix: str = "", max_tokens: int = 0) -> list[int]:
    """Token ids of the prompt to generate from, at most `max_tokens` long (0 = no limit).

    Too long: `cut_middle`; if even that cannot fit (a huge system prompt), the oldest tokens go.
    """
    def ids_of(msgs: Messages) -> list[int]:
        return token_ids(tok, msgs, assistant_prefix=assistant_prefix)

    ids = ids_of(messages)
    if max_tokens <= 0 or len(ids) <= max_tokens:
        return ids
    trimmed = cut_middle(tok, messages, lambda m: len(ids_of(m)), max_tokens)
    return ids_of(trimmed) if trimmed is not None else ids[-max_tokens:]


def for_server(tok, text: str) -> str:
    """A rendered prompt for a server that tokenizes it with special tokens added (a /completions
    endpoint): the BOS the template wrote goes when the tokenizer adds its own, so there is one.
    ChatML templates that start with a role marker keep it."""
    bos = tok.bos_token
    if not bos or not text.startswith(bos):
        return text
    adds = tok("x", add_special_tokens=True)["input_ids"]
    return text[len(bos):] if adds and adds[0] == tok.bos_token_id else text


def render_plain(messages: Messages, *, assistant_prefix: str = "") -> str:
    """PLAIN_TEMPLATE without a tokenizer, for a completions endpoint (which adds its own BOS)."""
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(keep_trailing_newline=True)  # as transformers renders templates
    return env.from_string(PLAIN_TEMPLATE).render(
        messages=list(messages), add_generation_prompt=True, bos_token="", eos_token=""
    ) + assistant_prefix
