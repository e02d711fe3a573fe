"""Every prompt text the pipeline sends to a model, in one place, overridable from params.yaml.

The wording is ours; the meaning follows the paper (arXiv 2308.06259): the tags of section 2.3,
the backward model's task of section 2.2 and the 5-point curation rubric of its Table 19.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from typing import Literal

Messages = list[dict[str, str]]  # [{"role": "system"|"user"|"assistant", "content": ...}, ...]

SEED_TAG = "Answer in the style of an AI Assistant."
AUGMENTED_TAG = "Answer with knowledge from web search."

BACKWARD_TEMPLATE = (
    "Below is a response written by an assistant. Write the request a user sent that this text "
    "answers. Reply with the user's request only.\n\nResponse:\n{output}"
)

# Self-curation, laid out as the paper's Table 19 (the wording is ours): the task, the rubric, the
# reply format ({ask}, which depends on the scoring mode), then the pair itself at the end.
CURATION_TEMPLATE = """A user's instruction and a candidate answer appear at the end of this message. Decide whether the answer would make a good example of how an AI assistant ought to reply to that instruction, and rate it on the 5-point scale below.

1: The answer is incomplete, vague, off-topic, controversial, or not what the user asked for; for example, content is missing, the numbered list does not start with the first item, it repeats the question, or it reads as a blog or forum post, a promotion or navigation text.
2: The answer addresses most of the request but does not solve it directly; it gives only a high-level method or outline instead of the solution.
3: The answer is helpful and covers the essentials of the request, and it is complete and self-contained, but it is written from another person's perspective rather than an AI assistant's: it reads like an excerpt from a blog post, a web page or search results, with personal experience or opinion, mentions of comment sections, or sharing on social media.
4: The answer is written from an AI assistant's perspective with a clear focus on the instruction. It is complete, clear, comprehensive, well organised and self-contained, with only minor room for improvement, such as being more concise or better focused.
5: The answer is a perfect AI-assistant answer: focused on being a helpful assistant, as if written by an expert on the subject, well written, logical, easy to follow, engaging and insightful, with no irrelevant sentences.

{ask}

Instruction:
{instruction}

Answer:
{output}"""
# The reply format, by scoring mode. `generate` parses the last line of a brief reasoning; `logprob`
# forces the reply to start with SCORE_PREFIX and reads the next token at once, so its prompt must
# not ask for a reasoning first.
CURATION_ASK_REASONING = (
    'First explain your rating briefly, then write the rating on the last line in the form "Score: <rating>".'
)
CURATION_ASK_SCORE = 'Reply with the rating alone, in the form "Score: <rating>".'
CURATION_FIELDS = ("ask", "instruction", "output")
# scoring mode -> the PromptsConfig key of its reply-format request
CURATION_ASK_KEY = {"generate": "curation_ask_reasoning", "logprob": "curation_ask_score"}

# The reply prefix after which the score digit is read in `logprob` scoring mode.
SCORE_PREFIX = "Score: "


@dataclass
class PromptsConfig:
    seed_tag: str = SEED_TAG
    augmented_tag: str = AUGMENTED_TAG
    # The system prompt at inference: the two tags joined (best in the paper's ablation); "" = none.
    # Its own key, so the answers depend on it alone and not on the training tags.
    inference_system: str = f"{SEED_TAG} {AUGMENTED_TAG}"
    backward_template: str = BACKWARD_TEMPLATE
    curation_template: str = CURATION_TEMPLATE  # fields: {ask}, {instruction}, {output}
    curation_ask_reasoning: str = CURATION_ASK_REASONING  # {ask} in score.mode generate (inserted as is)
    curation_ask_score: str = CURATION_ASK_SCORE  # {ask} in score.mode logprob (inserted as is)

    def problems(self) -> list[tuple[str, str]]:
        """A curation template that misses a field or names an unknown one is a params error, found
        before any model loads (str.format would fail on the first pair, or drop the pair's text)."""
        out = []
        problem = template_problem(self.curation_template, CURATION_FIELDS)
        if problem:
            out.append(("curation_template", problem))
        for key in CURATION_ASK_KEY.values():
            if not getattr(self, key).strip():
                out.append((key, "empty: the judge would not be told the reply format"))
        return out


def template_problem(template: str, fields: tuple[str, ...]) -> str | None:
    """What is wrong with a str.format template that must use exactly `fields`, or None."""
    try:
        used = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as e:  # an unmatched brace
        return f"not a valid template ({e}; write a literal brace as {{{{ or }}}})"
    unknown = sorted(used - set(fields))
    missing = [f for f in fields if f not in used]
    if unknown:
        shown = ", ".join("{" + u + "}" for u in unknown)
        return f"unknown field(s) {shown}; known: {', '.join('{' + f + '}' for f in fields)}"
    if missing:
        return f"missing field(s) {', '.join('{' + f + '}' for f in missing)}"
    return None


def chat(user: str, system: str | None = None, assistant: str | None = None) -> Messages:
    """Build a message list; None parts are left out."""
    msgs: Messages = []
    if system:
        msgs.append({"role": "system", "content": system})
    msgs.append({"role": "user", "content": user})
    if assistant is not None:
        msgs.append({"role": "assistant", "content": assistant})
    return msgs


def backward_messages(cfg: PromptsConfig, output: str, instruction: str | None = None) -> Messages:
    """Backward model M_yx: the user turn shows a text, the reply is the instruction it answers."""
    return chat(cfg.backward_template.format(output=output), assistant=instruction)


def forward_messages(system: str, instruction: str, output: str | None = None) -> Messages:
    """Forward model: tagged system prompt, the instruction, and (for training) the answer."""
    return chat(instruction, system=system, assistant=output)


def curation_messages(cfg: PromptsConfig, instruction: str, output: str,
                      mode: Literal["generate", "logprob"] = "logprob") -> Messages:
    """Self-curation: the model rates an (instruction, output) pair with the 5-point rubric; the
    reply format asked for is the scoring mode's (ScoreConfig.mode, whose default is logprob)."""
    if mode not in CURATION_ASK_KEY:
        raise ValueError(f"curation mode must be one of {', '.join(CURATION_ASK_KEY)}, got {mode!r}")
    ask = getattr(cfg, CURATION_ASK_KEY[mode])
    return chat(cfg.curation_template.format(ask=ask, instruction=instruction, output=output))
