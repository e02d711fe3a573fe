"""The OpenAI-compatible backend against a small scripted server on 127.0.0.1."""

from __future__ import annotations

import math
import threading

import pytest
from stub_server import StubServer

from humpback.engines.base import EngineError, Sampling
from humpback.engines.config import OpenAIConfig
from humpback.engines.openai_engine import LogprobsUnsupported, OpenAIEngine
from humpback.prompts import chat


def Server(respond):  # noqa: N802 - kept as the tests' name for the scripted server
    return StubServer(respond, late=reply("late"))


def reply(text: str, top: list[tuple[str, float]] | None = None) -> dict:
    choice: dict = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
    if top is not None:
        entries = [{"token": t, "logprob": lp, "top_logprobs": []} for t, lp in top[:1]]
        if entries:
            entries[0]["top_logprobs"] = [{"token": t, "logprob": lp} for t, lp in top]
        choice["logprobs"] = {"content": entries}
    return {"id": "x", "object": "chat.completion", "choices": [choice]}


def echo(body, n):
    return 200, reply("echo: " + body["messages"][-1]["content"]), {}


@pytest.fixture
def serve():
    servers = []

    def start(respond):
        s = Server(respond)
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.close()


def make(server, **kw) -> OpenAIEngine:
    cfg = OpenAIConfig(**{"base_url": server.url, "model": "judge", "backoff": 0.01, "timeout": 5.0, **kw})
    return OpenAIEngine(cfg)


def test_generate_in_order_with_concurrency_and_key(serve, monkeypatch):
    monkeypatch.setenv("HB_TEST_KEY", "sekret")
    server = serve(echo)
    reqs = [chat(f"q{i}", system="sys") for i in range(12)]
    with make(server, concurrency=4, api_key_env="HB_TEST_KEY") as e:
        out = e.generate(reqs, Sampling(temperature=0.7, top_p=0.9, max_new_tokens=5, seed=3))
    assert out == [f"echo: q{i}" for i in range(12)]
    body = server.bodies[0]
    assert body["model"] == "judge" and body["max_tokens"] == 5 and body["temperature"] == 0.7
    assert body["top_p"] == 0.9 and body["seed"] == 3 and body["messages"][0]["role"] == "system"
    assert server.headers[0]["Authorization"] == "Bearer sekret"


def test_choice_logprobs_continue_the_assistant_prefix(serve):
    top = [(" 5", -0.1), ("5", -2.5), ("4", -3.0), ("Great", -4.0)]
    server = serve(lambda body, n: (200, reply("5", top), {}))
    with make(server) as e:
        (got,) = e.choice_logprobs([chat("rate it")], ["1", "4", "5"], assistant_prefix="Score: ")
    assert got["5"] == pytest.approx(math.log(math.exp(-0.1) + math.exp(-2.5)))
    assert got["4"] == -3.0 and got["1"] == -math.inf
    body = server.bodies[0]
    assert body["logprobs"] is True and body["top_logprobs"] == 20 and body["max_tokens"] == 1
    assert body["messages"][-1] == {"role": "assistant", "content": "Score: "}
    assert body["continue_final_message"] is True and body["add_generation_prompt"] is False


def test_prefix_falls_back_when_the_endpoint_rejects_it(serve):
    def respond(body, n):
        if "continue_final_message" in body:
            return 400, {"error": {"message": "Unrecognized request argument: continue_final_message"}}, {}
        return 200, reply("1", [("1", -0.2), ("2", -1.8)]), {}

    server = serve(respond)
    with make(server, concurrency=1) as e:
        got = e.choice_logprobs([chat("a"), chat("b")], ["1", "2"], assistant_prefix="Verdict: ")
        assert e.prefix_mode == "none"
    assert got == [{"1": -0.2, "2": -1.8}] * 2
    assert server.bodies[-1]["messages"] == chat("b") or server.bodies[-1]["messages"] == chat("a")
    # prefix_mode continue: the rejection is an error, naming the endpoint and the status
    with make(server, prefix_mode="continue") as e, pytest.raises(EngineError, match=r"127\.0\.0\.1.*HTTP 400"):
        e.choice_logprobs([chat("a")], ["1", "2"], assistant_prefix="Verdict: ")


def test_missing_logprobs_is_not_implemented(serve):
    server = serve(lambda body, n: (200, reply("5"), {}))
    with make(server) as e, pytest.raises(NotImplementedError):
        e.choice_logprobs([chat("a")], ["5"])
    assert issubclass(LogprobsUnsupported, EngineError)


def test_retries_429_and_5xx_with_backoff(serve):
    def respond(body, n):
        if n == 1:
            return 429, {"error": "slow down"}, {"Retry-After": "0"}
        if n == 2:
            return 502, b"bad gateway", {}
        return echo(body, n)

    server = serve(respond)
    with make(server, max_retries=3) as e:
        assert e.generate([chat("hi")], Sampling()) == ["echo: hi"]
    assert len(server.bodies) == 3


def test_timeout_is_retried_then_reported(serve):
    server = serve(lambda body, n: ("sleep", 1.0, {}) if n == 1 else echo(body, n))
    with make(server, timeout=0.3, max_retries=2) as e:
        assert e.generate([chat("hi")], Sampling()) == ["echo: hi"]
    slow = serve(lambda body, n: ("sleep", 1.0, {}))
    with make(slow, timeout=0.2, max_retries=1) as e, pytest.raises(EngineError, match="timed out after 0.2s"):
        e.generate([chat("hi")], Sampling())


def test_garbage_json_is_a_clear_error_without_retries(serve):
    server = serve(lambda body, n: (200, b"<html>proxy error</html>", {}))
    with make(server) as e, pytest.raises(EngineError, match=r"not JSON.*proxy error"):
        e.generate([chat("hi")], Sampling())
    assert len(server.bodies) == 1
    shape = serve(lambda body, n: (200, {"choices": []}, {}))
    with make(shape) as e, pytest.raises(EngineError, match="unexpected reply shape"):
        e.generate([chat("hi")], Sampling())


def test_other_4xx_fail_at_once(serve):
    server = serve(lambda body, n: (401, {"error": "bad key"}, {}))
    with make(server, max_retries=5) as e, pytest.raises(EngineError, match="HTTP 401"):
        e.generate([chat("hi")], Sampling())
    assert len(server.bodies) == 1


def test_failure_after_retries_keeps_partial_answers(serve):
    healthy = threading.Event()

    def respond(body, n):
        if "bad" in body["messages"][-1]["content"] and not healthy.is_set():
            return 503, b"overloaded", {}
        return echo(body, n)

    server = serve(respond)
    reqs = [chat(f"q{i}" + (" bad" if i == 4 else "")) for i in range(8)]
    with make(server, concurrency=1, max_retries=2) as e:
        with pytest.raises(EngineError) as info:
            e.generate(reqs, Sampling())
        err = info.value
        assert server.url in str(err) and "HTTP 503" in str(err) and "request 4" in str(err)
        assert err.partial[:4] == [f"echo: q{i}" for i in range(4)] and err.partial[4] is None
        assert err.done == len([x for x in err.partial if x is not None]) >= 4
        # once the endpoint recovers, a second call sends only what is missing
        sent = len(server.bodies)
        healthy.set()
        out = e.generate(reqs, Sampling())
    assert out[4] == "echo: q4 bad" and out[:4] == err.partial[:4]
    assert len(server.bodies) - sent == 8 - err.done


def completion(text: str, top: dict[str, float] | None = None) -> dict:
    choice: dict = {"index": 0, "text": text, "finish_reason": "stop"}
    if top is not None:
        choice["logprobs"] = {"tokens": [next(iter(top))], "token_logprobs": [max(top.values())], "top_logprobs": [top]}
    return {"id": "x", "object": "text_completion", "choices": [choice]}


def test_completions_api_sends_the_prompt_rendered_here(serve):
    """A served pretrained model has no chat template: the prompt goes out as text in our format."""
    from humpback.rendering import render_plain

    def respond(body, n):
        if body["max_tokens"] == 1:
            return 200, completion(" 4", {" 4": math.log(0.6), " 5": math.log(0.3), "x": math.log(0.1)}), {}
        return 200, completion(" an answer "), {}

    server = serve(respond)
    msgs = chat("Name a red fruit.", system="Answer in the style of an AI Assistant.")
    with make(server, api="completions") as e:
        assert e.generate([msgs], Sampling(temperature=0.0, max_new_tokens=7, seed=1)) == ["an answer"]
        lps = e.choice_logprobs([msgs], ["4", "5"], assistant_prefix="Score: ")
    assert [p.rsplit("/", 1)[-1] for p in server.paths] == ["completions", "completions"]
    assert "messages" not in server.bodies[0] and server.bodies[0]["prompt"] == render_plain(msgs)
    assert server.bodies[0]["prompt"].endswith("### User:\nName a red fruit.\n\n### Assistant:\n")
    assert server.bodies[1]["prompt"] == render_plain(msgs) + "Score: " and server.bodies[1]["logprobs"] == 20
    assert lps[0]["4"] == pytest.approx(math.log(0.6)) and lps[0]["5"] == pytest.approx(math.log(0.3))
    # an endpoint that returns no top log-probabilities says so in the error type scoring falls back on
    server2 = serve(lambda body, n: (200, completion("4"), {}))
    with make(server2, api="completions") as e, pytest.raises(LogprobsUnsupported):
        e.choice_logprobs([msgs], ["4", "5"], assistant_prefix="Score: ")


def test_completions_api_renders_with_the_model_directorys_tokenizer(serve, tmp_path):
    from humpback.engines.config import EngineConfig
    from humpback.engines.loader import load_engine
    from humpback.models import BaseModelConfig, load_tokenizer, prepare_base
    from humpback.rendering import CUT_MARK, render

    ref = prepare_base(BaseModelConfig(source="tiny"), tmp_path / "m0")  # a chat-template model
    server = serve(lambda body, n: (200, completion("ok"), {}))
    cfg = EngineConfig(backend="openai", openai=OpenAIConfig(base_url=server.url, api="completions", backoff=0.01))
    msgs = chat("hi", system="sys")
    with load_engine(tmp_path / "m0", cfg) as e:
        e.generate([msgs], Sampling(max_new_tokens=3))
    sent = server.bodies[0]
    assert sent["model"] == "m0"
    tok = load_tokenizer(ref)
    # ChatML's first <|im_start|> is a role marker, not a BOS the server would add: it stays
    assert sent["prompt"] == render(tok, msgs) and sent["prompt"].startswith("<|im_start|>system")
    # an over-long prompt is fitted by the rule the local engines apply (engine.max_input_tokens)
    cfg.max_input_tokens = 48
    long = chat("word " * 300 + "the request", system="sys")
    with load_engine(tmp_path / "m0", cfg) as e:
        e.generate([long], Sampling(max_new_tokens=3))
    sent = server.bodies[-1]["prompt"]
    assert "the request" in sent and CUT_MARK in sent and len(tok(sent, add_special_tokens=False)["input_ids"]) <= 49
