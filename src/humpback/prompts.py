"""Every prompt text the pipeline sends to a model, in one place, overridable from params.yaml.

The wording is ours; the meaning follows the paper (arXiv 2308.06259): the tags of section 2.3,
the backward model's task of section 2.2 and the 5-point curation rubric of its Table 19.
"""

from __future__ import annotations

from dataclasses import dataclass

Messages = list[dict[str, str]]  # [{"role": "system"|"user"|"assistant", "content": ...}, ...]

SEED_TAG = "Answer in the style of an AI Assistant."
AUGMENTED_TAG = "Answer with knowledge from web search."

BACKWARD_TEMPLATE = (
    "Below is a response written by an assistant. Write the request a user sent that this text "
    "answers. Reply with the user's request only.\n\nResponse:\n{output}"
)

CURATION_TEMPLATE = """Review the user's instruction and the candidate answer below, then rate the answer on a 5-point scale.

1: The answer is incomplete, vague, off-topic, controversial, or not what the user asked for; for example, content is missing, the numbered list does not start with the first item, it repeats the question, or it reads as a blog or forum post, a promotion or navigation text.
2: The answer addresses most of the request but does not solve it directly; it gives only a high-level method or outline instead of the solution.
3: The answer is helpful and covers the essentials of the request, and it is complete and self-contained, but it is written from another person's perspective rather than an AI assistant's: it reads like an excerpt from a blog post, a web page or search results, with personal experience or opinion, mentions of comment sections, or sharing on social media.
4: The answer is written from an AI assistant's perspective with a clear focus on the instruction. It is complete, clear, comprehensive, well organised and self-contained, with only minor room for improvement, such as being more concise or better focused.
5: The answer is a perfect AI-assistant answer: focused on being a helpful assistant, as if written by an expert on the subject, well written, logical, easy to follow, engaging and insightful, with no irrelevant sentences.

Instruction:
{instruction}

Answer:
{output}

Write a brief reasoning first, then give your rating on the last line in the form "Score: <rating>"."""

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
    curation_template: str = CURATION_TEMPLATE



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


def curation_messages(cfg: PromptsConfig, instruction: str, output: str) -> Messages:
    """Self-curation: the model rates an (instruction, output) pair with the 5-point rubric."""
    return chat(cfg.curation_template.format(instruction=instruction, output=output))
