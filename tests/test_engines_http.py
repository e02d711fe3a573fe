"""The OpenAI-compatible backend against a small scripted server on 127.0.0.1."""

from __future__ import annotations

import math
import re
import socket
import threading
import time

import pytest
from stub_server import StubServer

from humpback.engines.base import EngineError, Sampling
from humpback.engines.config import OpenAIConfig
from humpback.engines.openai_engine import LogprobsUnsupported, OpenAIEngine, PromptTooLong, RequestRejected
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
    broken = serve(lambda body, n: (200, b'{"choices": [', {"Content-Type": "application/json"}))
    with make(broken) as e, pytest.raises(EngineError, match=r"HTTP 200 but the body is not JSON \(Expecting"):
        e.generate([chat("hi")], Sampling())
    assert len(broken.bodies) == 1
    listed = serve(lambda body, n: (200, b"[1, 2]", {}))
    with make(listed) as e, pytest.raises(EngineError, match=r"the body is not a JSON object: '\[1, 2\]'"):
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


# -- the openai client: usage, retries, errors ----------------------------------------------------


def counted(text: str, prompt: int, completion: int) -> dict:
    return {**reply(text), "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                                     "total_tokens": prompt + completion}}


def test_usage_totals_every_answered_request(serve):
    def respond(body, n):
        content = body["messages"][-1]["content"]
        if content == "silent":  # a server that reports no usage
            return 200, reply("ok"), {}
        return 200, counted("ok", prompt=len(content), completion=2), {}

    server = serve(respond)
    reqs = [chat("a" * k) for k in (1, 2, 3, 4)] + [chat("silent")]
    with make(server, concurrency=3) as e:
        assert e.usage == {"prompt_tokens": 0, "completion_tokens": 0, "requests": 0, "requests_without_usage": 0}
        e.generate(reqs, Sampling())
        assert e.usage == {"prompt_tokens": 10, "completion_tokens": 8, "requests": 5, "requests_without_usage": 1}
        e.generate(reqs[:2], Sampling())  # answered before: nothing sent, nothing added
        assert e.usage["requests"] == 5 and len(server.bodies) == 5
        e.generate([chat("bbb")], Sampling(seed=9))
    assert e.usage == {"prompt_tokens": 13, "completion_tokens": 10, "requests": 6, "requests_without_usage": 1}


def test_the_compute_ledger_gets_the_reported_tokens(serve):
    from humpback import ledger

    def respond(body, n):
        if body.get("logprobs"):  # a choice request: one token sampled, which the ledger counts as no output
            return 200, {**reply("1", top=[("1", -0.1), ("2", -2.0)]), "usage": {"prompt_tokens": 7, "completion_tokens": 1,
                                                               "total_tokens": 8}}, {}
        content = body["messages"][-1]["content"]
        return 200, (reply("ok") if content == "silent" else counted("ok", prompt=len(content), completion=3)), {}

    ledger.reset()
    server = serve(respond)
    with make(server, concurrency=4) as e:
        e.generate([chat("a" * k) for k in range(1, 21)] + [chat("silent")], Sampling())
        e.choice_logprobs([chat("x"), chat("y")], ["1", "2"])
    got = ledger.snapshot()
    ledger.reset()
    # 20 requests with usage (1+..+20 prompt tokens, 3 out each), one without (an example, no tokens), 2 choices
    assert (got.tokens_in, got.tokens_out, got.examples) == (210 + 14, 60, 23)


@pytest.mark.parametrize("status", [429, 500, 503])
def test_retryable_statuses_are_retried_until_the_server_answers(serve, status):
    server = serve(lambda body, n: (status, {"error": {"message": "busy"}}, {}) if n <= 2 else echo(body, n))
    start = time.monotonic()
    with make(server, max_retries=3, backoff=0.01) as e:
        assert e.generate([chat("hi")], Sampling()) == ["echo: hi"]
        assert e.usage["requests"] == 1
    assert len(server.bodies) == 3
    # engine.openai.backoff sets the first wait: two retries at 0.01 s, where the client's own 0.5 s would take >1 s
    assert time.monotonic() - start < 0.6


def test_a_servers_retry_after_is_honoured_over_backoff(serve):
    server = serve(lambda body, n: (429, b"{}", {"Retry-After": "0.4"}) if n == 1 else echo(body, n))
    start = time.monotonic()
    with make(server, max_retries=1, backoff=0.01) as e:
        assert e.generate([chat("hi")], Sampling()) == ["echo: hi"]
    assert time.monotonic() - start >= 0.4 and len(server.bodies) == 2


@pytest.mark.parametrize("status,body,kind,needle", [
    (400, {"error": {"message": "unknown field"}}, RequestRejected, r"HTTP 400: .*unknown field"),
    (400, {"object": "error", "message": "This model's maximum context length is 2048 tokens. However, you "
           "requested 4000 tokens"}, PromptTooLong, r"HTTP 400: the prompt is longer than model 'judge' takes"),
    (401, {"error": {"message": "invalid api key"}}, EngineError, r"HTTP 401: the endpoint refused the key in "
                                                                  r"\$HB_TEST_KEY: .*invalid api key"),
    (404, {"object": "error", "message": "The model `judge` does not exist."}, EngineError,
     r"HTTP 404: not found; check that the endpoint serves model 'judge'"),
])
def test_client_errors_fail_at_once_with_a_clear_line(serve, monkeypatch, status, body, kind, needle):
    monkeypatch.setenv("HB_TEST_KEY", "sekret-key-1")
    server = serve(lambda b, n: (status, body, {}))
    with make(server, max_retries=5, api_key_env="HB_TEST_KEY") as e, pytest.raises(EngineError) as info:
        e.choice_logprobs([chat("a")], ["1", "2"], assistant_prefix="Score: ")
    err = info.value
    assert type(err) is kind and re.search(needle, str(err)), str(err)
    assert str(err).startswith(f"{server.url}/chat/completions: ") and "\n" not in str(err)
    assert "gave up" not in str(err) and "(request 0)" in str(err)
    # one request: not retried; a 400 that is not about the prefix is not retried without it either
    assert len(server.bodies) == (2 if kind is RequestRejected else 1)


def test_a_missing_key_sends_no_authorization_and_says_so(serve, monkeypatch):
    monkeypatch.delenv("HB_UNSET_KEY", raising=False)
    server = serve(lambda b, n: (401, {"error": "no key"}, {}))
    with make(server, api_key_env="HB_UNSET_KEY") as e, pytest.raises(EngineError, match=r"refused no key "
                                                                                          r"\(\$HB_UNSET_KEY is unset\)"):
        e.generate([chat("a")], Sampling())
    assert server.headers[0]["Authorization"] is None


def test_errors_name_the_endpoint_without_its_credentials(serve, monkeypatch):
    key, userinfo_key, query_key = "env-secret-4242", "url-secret-5151", "query-secret-6161"
    monkeypatch.setenv("HB_TEST_KEY", key)
    server = serve(lambda b, n: (401, {"error": f"invalid key Bearer {key} (also {query_key})"}, {}))
    host = server.url.split("//")[1].split("/")[0]
    url = f"http://judge:{userinfo_key}@{host}/v1?api_key={query_key}&api-version=2"
    with make(server, base_url=url, api_key_env="HB_TEST_KEY") as e, pytest.raises(EngineError) as info:
        e.generate([chat("a")], Sampling())
    line = str(info.value)
    assert line.startswith(f"http://***@{host}/v1/chat/completions?api_key=***&api-version=2: HTTP 401")
    assert "invalid key Bearer ***" in line
    assert not any(s in line for s in (key, userinfo_key, query_key)), line
    # the query went with the request, after the route
    assert server.paths[0] == f"/v1/chat/completions?api_key={query_key}&api-version=2"
    # a host that refuses the connection: retried, then the same redacted endpoint
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dead = f"http://judge:{userinfo_key}@127.0.0.1:{port}/v1?token={query_key}"
    with make(server, base_url=dead, api_key_env="HB_TEST_KEY", max_retries=1) as e, \
            pytest.raises(EngineError) as info:
        e.generate([chat("a")], Sampling())
    line = str(info.value)
    assert line.startswith(f"http://***@127.0.0.1:{port}/v1/chat/completions?token=***: gave up after 2 attempts; "
                           "last error: connection failed (")
    assert not any(s in line for s in (key, userinfo_key, query_key)), line


def test_vllm_fields_reach_the_server_through_extra_body(serve):
    server = serve(lambda body, n: (200, reply("5", [("5", -0.1)]), {}))
    with make(server, prefix_mode="continue") as e:
        e.choice_logprobs([chat("rate")], ["5"], assistant_prefix="Score: ")
        e.choice_logprobs([chat("rate")], ["5"])  # no prefix: no vLLM fields
    first, second = server.bodies
    assert first["continue_final_message"] is True and first["add_generation_prompt"] is False
    assert "continue_final_message" not in second and "add_generation_prompt" not in second
    assert first["logprobs"] is True and first["top_logprobs"] == 20


def test_a_failure_stops_the_other_requests_retries(serve):
    """Request 0 is refused for good while request 1 is being retried with long waits: the batch
    fails at once instead of after request 1's retries, and request 1's answer is simply missing."""
    def respond(body, n):
        if body["messages"][-1]["content"] == "bad":
            time.sleep(0.2)  # request 1 has had its first 503 and is waiting to retry
            return 400, {"error": "malformed"}, {}
        return 503, b"overloaded", {}

    server = serve(respond)
    start = time.monotonic()
    with make(server, concurrency=2, max_retries=5, backoff=2.0) as e, pytest.raises(RequestRejected) as info:
        e.generate([chat("bad"), chat("slow")], Sampling())
    assert time.monotonic() - start < 1.5  # request 1 alone would wait 2 + 4 + 8 + ... s
    assert "(request 0)" in str(info.value) and info.value.partial == [None, None]
    assert len(server.bodies) == 2
