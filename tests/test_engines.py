"""The transformers backend for real on a tiny random Llama; backend selection; prompt fitting."""

from __future__ import annotations

import contextlib
import importlib.util
import math

import pytest

import humpback.engines.loader as engines
from humpback.engines.base import Sampling
from humpback.engines.config import EngineConfig
from humpback.engines.loader import load_engine, select_backend
from humpback.engines.prompting import choice_plan
from humpback.errors import ConfigError
from humpback.prompts import chat
from humpback.rendering import CUT_MARK, encode

GREEDY = Sampling(temperature=0.0, top_p=1.0, max_new_tokens=6, seed=0)
DIGITS = ["1", "2", "3", "4", "5"]


def _requests(n: int = 7):
    # lengths differ a lot, so sorting and padding matter
    return [chat(f"Question {i}: " + "tell me more " * (i * 3 % 11)) for i in range(n)]


@pytest.fixture(scope="module")
def engine(tiny_model_dir):
    import torch

    with load_engine(tiny_model_dir, EngineConfig(backend="transformers", cpu_threads=1, dtype="float32", batch_size=3)) as e:
        # With tied embeddings a random model's greedy pick repeats its input token ("\n" after the
        # template), which decodes to nothing; a separate random output layer gives varied text.
        torch.manual_seed(0)
        e.model.lm_head.weight = torch.nn.Parameter(torch.randn_like(e.model.lm_head.weight) * 0.5)
        yield e


@contextlib.contextmanager
def _batch_size(engine, n: int):
    old, engine.cfg.batch_size = engine.cfg.batch_size, n
    try:
        yield
    finally:
        engine.cfg.batch_size = old


def test_generate_keeps_request_order_and_matches_one_at_a_time(engine):
    reqs = _requests()
    batched = engine.generate(reqs, GREEDY)
    assert len(batched) == len(reqs) and all(isinstance(t, str) and t for t in batched)
    assert engine.generate(reqs[::-1], GREEDY) == batched[::-1]
    # left padding with position ids from the mask: each answer is what the prompt alone gives
    with _batch_size(engine, 1):
        single = engine.generate(reqs, GREEDY)
    assert single == batched


def test_batches_are_sorted_by_length(engine, monkeypatch):
    widths = []
    real = engine.model.generate

    def spy(input_ids, attention_mask, **kw):
        widths.append(attention_mask.sum(-1).tolist())
        return real(input_ids=input_ids, attention_mask=attention_mask, **kw)

    monkeypatch.setattr(engine.model, "generate", spy)
    engine.generate(_requests(), Sampling(temperature=0.0, max_new_tokens=1))
    flat = [w for batch in widths for w in batch]
    assert [len(b) for b in widths] == [3, 3, 1]
    assert flat == sorted(flat, reverse=True)


def test_sampling_is_seeded(engine):
    reqs = _requests(4)
    s = Sampling(temperature=1.0, top_p=0.95, max_new_tokens=8, seed=7)
    first = engine.generate(reqs, s)
    assert engine.generate(reqs, s) == first
    other = engine.generate(reqs, Sampling(temperature=1.0, top_p=0.95, max_new_tokens=8, seed=8))
    assert other != first


def test_samples_follow_each_request_not_its_batch(engine):
    reqs = _requests()
    s = Sampling(temperature=1.0, top_p=0.95, max_new_tokens=8, seed=7)
    whole = engine.generate(reqs, s)
    assert len(set(whole)) == len(reqs)
    with _batch_size(engine, 1):
        single = engine.generate(reqs, s)
    assert single == whole
    # part of a call, as a Ray replica gets it: each request samples as it did in the whole call
    assert engine.generate_at(reqs[4:], s, range(4, 7)) == whole[4:]
    # a nucleus that holds only the likeliest token is greedy decoding
    assert engine.generate(reqs, Sampling(temperature=1.0, top_p=1e-6, max_new_tokens=6, seed=7)) == \
        engine.generate(reqs, GREEDY)


def test_choice_logprobs_are_finite_and_batch_independent(engine):
    reqs = _requests()
    batched = engine.choice_logprobs(reqs, DIGITS, assistant_prefix="Score: ")
    assert len(batched) == len(reqs)
    for row in batched:
        assert set(row) == set(DIGITS)
        assert all(math.isfinite(v) and v < 0 for v in row.values())
        assert sum(math.exp(v) for v in row.values()) <= 1.0 + 1e-6
    engine.cfg.batch_size = 1
    try:
        single = engine.choice_logprobs(reqs, DIGITS, assistant_prefix="Score: ")
    finally:
        engine.cfg.batch_size = 3
    for a, b in zip(batched, single, strict=True):
        assert a == pytest.approx(b, abs=1e-4)


def test_choice_logprobs_match_a_plain_forward_pass(engine):
    import torch

    msgs = _requests(3)[2]
    ids = encode(engine.tok, msgs, "Score: ")
    with torch.inference_mode():
        logp = torch.log_softmax(engine.model(torch.tensor([ids])).logits[0, -1].float(), -1)
    five = engine.tok("5", add_special_tokens=False)["input_ids"][0]
    got = engine.choice_logprobs([msgs], ["5", "not-a-token"], assistant_prefix="Score: ")[0]
    assert got["5"] == pytest.approx(logp[five].item(), abs=1e-4)
    assert got["not-a-token"] == -math.inf


def test_lora_adapter_dir_loads_and_changes_the_model(tiny_model_dir, tiny_lora_dir):
    cfg = EngineConfig(backend="transformers", cpu_threads=1, dtype="float32", batch_size=4)
    reqs = _requests(2)
    with load_engine(tiny_lora_dir, cfg) as lora:
        assert lora.ref.adapter == str(tiny_lora_dir)
        assert len(lora.generate(reqs, GREEDY)) == 2
        a = lora.choice_logprobs(reqs, DIGITS, assistant_prefix="Score: ")
    with load_engine(tiny_model_dir, cfg) as base:
        b = base.choice_logprobs(reqs, DIGITS, assistant_prefix="Score: ")
    # the adapter moves the scores: some choice's log-probability differs beyond float noise
    assert [set(row) for row in a] == [set(row) for row in b] == [set(DIGITS)] * len(reqs)
    gap = max(abs(x[d] - y[d]) for x, y in zip(a, b, strict=True) for d in DIGITS)
    assert gap > 1e-4, f"the adapter left every choice log-probability unchanged (largest difference {gap:g})"


def test_long_prompt_loses_the_middle_of_the_user_message(engine):
    tok = engine.tok
    text = "START " + " ".join(f"w{i}" for i in range(600)) + " END"
    msgs = chat(text, system="SYSTEM PROMPT")
    ids = encode(tok, msgs, max_tokens=200)
    assert len(ids) <= 200
    rendered = tok.decode(ids)
    for kept in ("SYSTEM PROMPT", "START", "END", CUT_MARK.strip(), "<|im_start|>assistant"):
        assert kept in rendered
    assert "w300" not in rendered
    assert encode(tok, msgs) == encode(tok, msgs, max_tokens=10_000)  # short enough: untouched


def test_engine_respects_max_input_tokens(tiny_model_dir, monkeypatch):
    cfg = EngineConfig(backend="transformers", cpu_threads=1, dtype="float32", max_input_tokens=64)
    with load_engine(tiny_model_dir, cfg) as e:
        lengths = []
        real = e.model.generate
        monkeypatch.setattr(e.model, "generate", lambda **kw: lengths.append(kw["input_ids"].shape[1]) or real(**kw))
        e.generate([chat("word " * 500)], Sampling(temperature=0.0, max_new_tokens=2))
    assert lengths == [64]


class _FakeTok:
    """A tokenizer whose vocabulary has space-led digits (" 5" is one token), like Llama 3's."""

    def __init__(self):
        self.vocab = {"Score": 0, ":": 1, " ": 2, **{f"Ġ{d}": 10 + int(d) for d in "12345"}}
        self.inv = {v: k for k, v in self.vocab.items()}

    def __call__(self, text, add_special_tokens=False):
        if text.startswith(" ") and f"Ġ{text[1:]}" in self.vocab:
            return {"input_ids": [self.vocab[f"Ġ{text[1:]}"]]}
        return {"input_ids": [99, 98]}  # anything else: more than one token

    def get_vocab(self):
        return self.vocab

    def convert_ids_to_tokens(self, t):
        return self.inv[t]

    def decode(self, ids):
        return "".join(self.inv[t].replace("Ġ", " ") for t in ids)


def test_choice_plan_moves_the_space_into_space_led_digit_tokens(engine):
    prefix, ids = choice_plan(_FakeTok(), "Score: ", ["1", "5"])
    assert prefix == "Score:" and ids == {"1": [11], "5": [15]}
    # SmolLM2 splits " 5" into " " + "5": the prefix keeps its space and the bare digit is scored
    prefix, ids = choice_plan(engine.tok, "Score: ", ["5"])
    assert prefix == "Score: " and ids["5"] == engine.tok("5", add_special_tokens=False)["input_ids"]


def test_auto_backend_selection(monkeypatch):
    for cuda, vllm, expected in [(True, True, "vllm"), (True, False, "transformers"), (False, True, "transformers")]:
        monkeypatch.setattr(engines, "cuda_available", lambda c=cuda: c)
        monkeypatch.setattr(engines, "vllm_available", lambda v=vllm: v)
        assert select_backend(EngineConfig()) == expected
    assert select_backend(EngineConfig(backend="openai")) == "openai"


def test_missing_optional_backends_are_config_errors(tiny_model_dir):
    if not engines.vllm_available():
        with pytest.raises(ConfigError, match="vllm is not installed"):
            load_engine(tiny_model_dir, EngineConfig(backend="vllm"))
    if importlib.util.find_spec("ray") is None:
        with pytest.raises(ConfigError, match="ray"):
            load_engine(tiny_model_dir, EngineConfig(backend="ray"))
    with pytest.raises(ConfigError, match="base_url"):
        load_engine(tiny_model_dir, EngineConfig(backend="openai"))


@pytest.mark.slow
def test_embedded_model_answers_sensibly(tmp_path):
    from humpback.models import BaseModelConfig, prepare_base

    prepare_base(BaseModelConfig(), tmp_path / "base")
    with load_engine(tmp_path / "base", EngineConfig(backend="transformers", cpu_threads=1)) as e:
        (answer,) = e.generate([chat("What is the capital of France?")], Sampling(temperature=0.0, max_new_tokens=24))
        (scores,) = e.choice_logprobs([chat("Reply with one digit from 1 to 5.")], DIGITS)
    assert "paris" in answer.lower()
    assert all(math.isfinite(v) for v in scores.values())


def test_shared_prompt_head_is_read_once_with_the_same_scores(engine, monkeypatch):
    from humpback.engines import transformers_engine as te
    from humpback.prompts import PromptsConfig, curation_messages

    cfg = PromptsConfig()
    pairs = [("Name a prime.", "Seven."), ("Sum 2 and 2?", "Four, since 2 + 2 = 4."), ("Hi", "Hello! " * 30),
             ("Capital of France?", "Paris.")]  # two batches of the engine's 3
    reqs = [curation_messages(cfg, i, o) for i, o in pairs]
    ids = [te.encode(engine.tok, r, "Score: ") for r in reqs]
    assert te.shared_prefix_length(ids) > 200  # the rubric is shared
    shared = engine.choice_logprobs(reqs, DIGITS, assistant_prefix="Score: ")
    monkeypatch.setattr(te, "shared_prefix_length", lambda ids: 0)
    plain = engine.choice_logprobs(reqs, DIGITS, assistant_prefix="Score: ")
    for a, b in zip(shared, plain, strict=True):
        assert a == pytest.approx(b, abs=1e-4)


def test_shared_prefix_length():
    from humpback.engines.transformers_engine import shared_prefix_length

    head = list(range(40))
    assert shared_prefix_length([head + [1, 2], head + [3]]) == 40
    assert shared_prefix_length([head, head]) == 39  # each prompt keeps a token of its own
    assert shared_prefix_length([head[:10] + [1], head[:10] + [2]]) == 0  # too short to pay off
    assert shared_prefix_length([head]) == 0


def test_vllm_engine_settings_come_from_params():
    from humpback.engines.config import EngineConfig, VLLMConfig
    from humpback.engines.vllm_engine import engine_kwargs

    cfg = EngineConfig(vllm=VLLMConfig(tensor_parallel_size=4, max_model_len=4096, max_lora_rank=32))
    plain = engine_kwargs(cfg, lora=False)
    assert plain["tensor_parallel_size"] == 4 and plain["max_model_len"] == 4096
    assert "enable_lora" not in plain
    assert engine_kwargs(cfg, lora=True) == {**plain, "enable_lora": True, "max_lora_rank": 32, "max_loras": 1}
    assert "max_model_len" not in engine_kwargs(EngineConfig(), lora=False)  # 0 = the model's own limit
