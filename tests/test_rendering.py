"""Prompt formats: the model's chat template, or ours for a pretrained base without one."""

from __future__ import annotations

import json

import pytest

from humpback.errors import ConfigError
from humpback.models import (
    BaseModelConfig,
    TinyConfig,
    build_tiny,
    load_embedded_tokenizer,
    load_tokenizer,
    prepare_base,
    resolve,
)
from humpback.prompts import forward_messages
from humpback.rendering import PLAIN_TEMPLATE, encode, prepare, render, render_plain, resolve_format
from humpback.training.data import IGNORE, tokenize_example


@pytest.fixture(scope="module")
def chat_dir(tmp_path_factory):
    """The embedded tokenizer saved once: reading the GGUF takes seconds, the saved files a moment."""
    d = tmp_path_factory.mktemp("tok")
    load_embedded_tokenizer().save_pretrained(d)
    return d


def embedded(chat_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(chat_dir)


@pytest.fixture
def bare(chat_dir):
    """A pretrained-style tokenizer: no chat template, no pad token, BOS = EOS = <|endoftext|>."""
    tok = embedded(chat_dir)
    tok.chat_template = None
    tok.pad_token = None
    tok.bos_token = tok.eos_token = "<|endoftext|>"
    return tok


MSGS = forward_messages("Answer in the style of an AI Assistant.", "Name a red fruit.", "An apple.")


def test_auto_picks_the_tokenizers_template_when_there_is_one(bare, chat_dir):
    chat = embedded(chat_dir)
    assert resolve_format(chat, "auto") == "chat" and resolve_format(bare, "auto") == "plain"
    before = chat.chat_template
    assert prepare(chat, "auto").chat_template == before
    assert prepare(embedded(chat_dir), "plain").chat_template == PLAIN_TEMPLATE
    with pytest.raises(ConfigError, match="no chat template"):
        resolve_format(bare, "chat")
    with pytest.raises(ConfigError, match="'jinja' is not one of auto, chat, plain"):
        resolve_format(bare, "jinja")


def test_plain_format_layout_and_pad_token(bare):
    tok = prepare(bare, "auto")
    assert tok.pad_token == tok.eos_token == "<|endoftext|>"
    prompt = render(tok, MSGS[:-1])
    assert prompt == ("<|endoftext|>Answer in the style of an AI Assistant.\n\n### User:\nName a red fruit.\n\n"
                      "### Assistant:\n")
    full = render(tok, MSGS, generation_prompt=False)
    assert full.startswith(prompt) and "An apple.<|endoftext|>" in full
    # a completions endpoint gets the same text, less the BOS the server adds itself
    assert render_plain(MSGS[:-1], assistant_prefix="Score: ") == prompt.removeprefix("<|endoftext|>") + "Score: "


def test_training_on_plain_format_learns_the_reply_and_its_end_of_sequence(bare):
    tok = prepare(bare, "auto")
    t = tokenize_example(tok, MSGS, 256)
    reply = [i for i, lab in zip(t.input_ids, t.labels, strict=True) if lab != IGNORE]
    assert tok.decode(reply) == "An apple.<|endoftext|>"
    # the prompt the model is trained on is the one every engine sends
    assert t.input_ids[: len(t.input_ids) - len(reply)] == encode(tok, MSGS[:-1])


def test_a_tokenizer_without_eos_is_refused(bare):
    bare.eos_token = None
    with pytest.raises(ConfigError, match="no end-of-sequence token"):
        prepare(bare, "auto")


def test_pointer_to_a_pretrained_model_records_and_applies_the_plain_format(tmp_path):
    src = tmp_path / "llama-base"
    build_tiny(src, TinyConfig(chat=False))
    assert not (src / "chat_template.jinja").exists()
    ref = prepare_base(BaseModelConfig(source=str(src)), tmp_path / "models" / "base")
    meta = json.loads((tmp_path / "models/base/humpback_model.json").read_text())
    assert meta == {"kind": "pointer", "base": str(src.resolve()), "prompt_format": "plain"}
    assert ref.prompt_format == "plain" == resolve(tmp_path / "models/base").prompt_format
    tok = load_tokenizer(ref)
    assert tok.chat_template == PLAIN_TEMPLATE and tok.pad_token == "<|endoftext|>"


def test_tiny_pretrained_style_checkpoint_is_saved_in_plain_format(tmp_path):
    ref = prepare_base(BaseModelConfig(source="tiny", tiny=TinyConfig(chat=False)), tmp_path / "base")
    tok = load_tokenizer(ref)
    assert tok.chat_template == PLAIN_TEMPLATE and tok.pad_token is not None
    # chat forced on a model without a template is an error at the base_model stage
    with pytest.raises(ConfigError, match="no chat template"):
        prepare_base(BaseModelConfig(source="tiny", tiny=TinyConfig(chat=False), prompt_format="chat"),
                     tmp_path / "base2")


def test_a_server_that_adds_bos_gets_the_prompt_without_ours(bare, chat_dir):
    from humpback.rendering import for_server

    tok = prepare(bare, "auto")
    text = render(tok, MSGS[:-1])
    adds_bos = tok("x", add_special_tokens=True)["input_ids"][0] == tok.bos_token_id
    assert for_server(tok, text) == (text.removeprefix("<|endoftext|>") if adds_bos else text)
    chat = embedded(chat_dir)  # ChatML: the leading <|im_start|> is a role marker
    assert for_server(chat, render(chat, MSGS[:-1])) == render(chat, MSGS[:-1])
