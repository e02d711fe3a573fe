"""Any OpenAI-compatible endpoint (a vLLM server, a hosted judge) through the official `openai` client.

Requests go out concurrently from a thread pool (the client is thread-safe). The client retries
timeouts, connection errors, HTTP 408/409/429 and 5xx with exponential backoff and jitter (a
Retry-After header up to two minutes wins); other 4xx fail at once. `max_retries` and `timeout` are
the client's own; `backoff` sets its first wait, which the client fixes at 0.5 s. When a request
still fails, the other requests stop retrying, the in-flight ones finish, and an EngineError names
the endpoint, the request and the status, carrying every answer that did arrive in `.partial`.
Answers are also remembered by the engine, so calling again re-sends only the missing.

Every reply's `usage` is added to `engine.usage` (prompt and completion tokens, requests answered),
so a stage can report what an endpoint was asked for.

`api: completions` sends /completions with the prompt text rendered by humpback.rendering (the
model directory's tokenizer where there is one, else our plain format), the way training rendered
it; the prefix is appended to that text, and top log-probabilities are read from `logprobs`.

`assistant_prefix` for choice_logprobs (chat api): the prefix goes out as a final assistant message with
vLLM's `continue_final_message: true, add_generation_prompt: false` (fields the OpenAI API does not
have, sent through `extra_body`), so the model continues it. Endpoints that reject those fields
(HTTP 400/422) are asked again without the prefix, reading the first reply token (prefix_mode: auto);
prefix_mode: none never sends it.

Credentials never leave in text: every error and log line names the endpoint as `redact_url` writes
it (no userinfo, no `?api_key=`), the key read from `api_key_env` is registered so that a reply
echoing it is redacted too, and the HTTP client's own request log goes through the same filter.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import openai
from openai._constants import INITIAL_RETRY_DELAY, MAX_RETRY_AFTER_DELAY
from openai.types import Completion
from openai.types.chat import ChatCompletion
from tqdm.auto import tqdm

from humpback import ledger
from humpback.engines.base import Engine, EngineError, Messages, Sampling
from humpback.engines.config import OpenAIConfig
from humpback.engines.prompting import logsumexp
from humpback.errors import (
    ConfigError,
    install_redaction,
    redact_text,
    redact_url,
    register_secret,
    register_url,
    url_secrets,
)
from humpback.rendering import encode, for_server, render, render_plain

log = logging.getLogger(__name__)

TOP_LOGPROBS = 20  # the most OpenAI's API returns
# what a 400 says when the prompt does not fit (vLLM: "maximum context length is 2048 tokens";
# OpenAI: code context_length_exceeded)
_TOO_LONG = re.compile(r"context length|context_length|context window|max_model_len|prompt is too long", re.I)

for _name in ("httpx2", "httpx", "openai"):  # the HTTP client logs every request's URL, userinfo and query included
    install_redaction(logging.getLogger(_name))


def endpoint_url(base_url: str, route: str) -> str:
    """`route` appended to the base URL's path; its query (`?api-version=`, `?key=`) stays a query."""
    parts = urlsplit(base_url.strip())
    return urlunsplit(parts._replace(path=parts.path.rstrip("/") + route))


class LogprobsUnsupported(EngineError, NotImplementedError):
    """The endpoint answered without log-probabilities; callers may fall back to parsing text."""


class RequestRejected(EngineError):
    """HTTP 400/422: the endpoint refused the request (often a field it does not know); not retried."""


class PromptTooLong(RequestRejected):
    """HTTP 400: the prompt does not fit the served model's context; asking without the prefix would not help."""


class _Stopped(Exception):
    """Another request failed for good; stop retrying this one."""


class _Client(openai.OpenAI):
    """The SDK's client and its retry loop, with two things it has no argument for: the first wait
    (engine.openai.backoff; the SDK fixes 0.5 s and doubles it up to 8 s) scales its whole schedule,
    and a wait ends early, abandoning the request, once `stopped` is set."""

    def __init__(self, *, backoff: float = INITIAL_RETRY_DELAY, **kw: Any):
        super().__init__(**kw)
        self.backoff = backoff
        self.stopped = threading.Event()

    def _calculate_retry_timeout(self, remaining_retries, options, response_headers=None):
        wait = super()._calculate_retry_timeout(remaining_retries, options, response_headers)
        told = self._parse_retry_after_header(response_headers)
        if told is not None and math.isfinite(told) and 0 < told <= MAX_RETRY_AFTER_DELAY:
            return wait  # the server's own Retry-After, as the SDK honours it
        return wait * self.backoff / INITIAL_RETRY_DELAY

    def _sleep_for_retry(self, *, retries_taken, max_retries, options, response, **_):
        wait = self._calculate_retry_timeout(max_retries - retries_taken, options, response.headers if response else None)
        log.debug("retrying in %.2fs (retry %d of %d)", wait, retries_taken + 1, max_retries)
        if self.stopped.wait(wait):
            raise _Stopped


def _attempts(e: openai.APIError) -> int:
    """How many times the client sent the request that failed (it numbers its retries in a header)."""
    try:
        return int(e.request.headers.get("x-stainless-retry-count", "0")) + 1
    except (AttributeError, RuntimeError, ValueError):
        return 1


def _one_line(text: str, limit: int = 300) -> str:
    return " ".join(str(text)[:limit].split())


class OpenAIEngine(Engine):
    name = "openai"

    def __init__(self, cfg: OpenAIConfig, model: str = "", *, tokenizer=None, max_input_tokens: int = 0):
        if not cfg.base_url:
            raise ConfigError("engine.openai.base_url: empty; set the endpoint, e.g. http://localhost:8000/v1")
        self.cfg = cfg
        self.model = model or cfg.model
        if not self.model:
            raise ConfigError("engine.openai.model: empty; name the model the endpoint serves")
        self.api = cfg.api
        self.url = endpoint_url(cfg.base_url, "/chat/completions" if cfg.api == "chat" else "/completions")
        register_url(self.url)
        self.shown_url = redact_url(self.url)  # what errors and logs name: no credentials
        if url_secrets(self.url):
            log.warning("%s: the endpoint URL carries a credential; it is never printed or stored by humpback, "
                        "but DVC records params values in dvc.lock: prefer the environment variable api_key_env "
                        "names", self.shown_url)
        self.tok = tokenizer  # completions api: renders the prompt; None = our plain format
        self.max_input_tokens = max_input_tokens  # completions api with a tokenizer: the prompt is fitted to it
        self.key_env = cfg.api_key_env
        key = os.environ.get(cfg.api_key_env, "") if cfg.api_key_env else ""
        register_secret(key)
        self.has_key = bool(key)
        # no key: no Authorization header at all (the SDK insists on a key, so it gets one it never sends)
        self._headers = {} if key else {"Authorization": openai.omit}
        base = urlsplit(cfg.base_url.strip())
        self.client = _Client(
            api_key=key or "unused",
            # the query (`?api-version=`, `?key=`) goes with every request, after the route
            base_url=urlunsplit(base._replace(query="", fragment="")),
            default_query=dict(parse_qsl(base.query, keep_blank_values=True)) or None,
            max_retries=cfg.max_retries,
            timeout=cfg.timeout,
            backoff=cfg.backoff,
        )
        self.prefix_mode = cfg.prefix_mode
        self._memo: dict[str, Any] = {}
        self._lock = threading.Lock()
        # what the endpoint answered so far (its `usage`); a reply without usage adds no tokens
        self.usage = {"prompt_tokens": 0, "completion_tokens": 0, "requests": 0, "requests_without_usage": 0}
        # the compute ledger names the served model, never the URL (it may carry a credential)
        ledger.note_engine("openai", {"type": "remote", "name": self.model, "count": 0})

    # -- one request -----------------------------------------------------------------------------

    def _failure(self, e: openai.APIError) -> EngineError:
        """The client's typed error as one line naming the endpoint (and nothing it was sent with)."""
        url, tries = self.shown_url, _attempts(e)
        if isinstance(e, openai.APITimeoutError):
            last = f"timed out after {self.cfg.timeout:g}s"
        elif isinstance(e, openai.APIConnectionError):
            cause = e.__cause__ or e
            last = f"connection failed ({type(cause).__name__}: {_one_line(cause, 200)})"
        elif isinstance(e, openai.APIStatusError):
            code, body = e.status_code, _one_line(e.response.text)
            last = f"HTTP {code}: {body}"
            if isinstance(e, openai.BadRequestError) and _TOO_LONG.search(body):
                return PromptTooLong(f"{url}: HTTP 400: the prompt is longer than model '{self.model}' takes "
                                     f"(lower engine.max_input_tokens): {body}")
            if code in (400, 422):
                return RequestRejected(f"{url}: {last}")
            if isinstance(e, (openai.AuthenticationError, openai.PermissionDeniedError)):
                sent = (f"the key in ${self.key_env}" if self.has_key
                        else f"no key (${self.key_env} is unset)" if self.key_env else "no key (api_key_env is empty)")
                return EngineError(f"{url}: HTTP {code}: the endpoint refused {sent}: {body}")
            if isinstance(e, openai.NotFoundError):
                return EngineError(f"{url}: HTTP 404: not found; check that the endpoint serves model "
                                   f"'{self.model}' and that base_url is right: {body}")
            if code not in (408, 409, 429) and code < 500:  # what the client does not retry
                return EngineError(f"{url}: {last}")
        else:  # a 200 the client could not read
            return EngineError(f"{url}: HTTP 200 but the body is not a valid reply: {_one_line(e)}")
        return EngineError(f"{url}: gave up after {tries} attempt{'s' if tries > 1 else ''}; last error: {last}")

    def _send(self, kwargs: dict, *, choice: bool = False) -> Any:
        create = self.client.chat.completions.create if self.api == "chat" else self.client.completions.create
        try:
            reply = create(**kwargs, extra_headers=self._headers)
        except openai.APIError as e:
            raise self._failure(e) from None
        except json.JSONDecodeError as e:  # a body that says it is JSON and is not
            raise EngineError(f"{self.shown_url}: HTTP 200 but the body is not JSON ({e})") from None
        if isinstance(reply, str):  # the client hands back a body it cannot decode as it is
            raise EngineError(f"{self.shown_url}: HTTP 200 but the body is not JSON: {_one_line(reply, 200)!r}")
        if not isinstance(reply, ChatCompletion | Completion):
            raise EngineError(f"{self.shown_url}: HTTP 200 but the body is not a JSON object: {_one_line(reply, 200)!r}")
        usage = reply.usage
        with self._lock:
            self.usage["requests"] += 1
            if usage is None:
                self.usage["requests_without_usage"] += 1
            else:
                self.usage["prompt_tokens"] += usage.prompt_tokens or 0
                self.usage["completion_tokens"] += usage.completion_tokens or 0
                # the ledger counts a choice request's one sampled token as no output, as the local backends do
                ledger.add_tokens(usage.prompt_tokens or 0, 0 if choice else usage.completion_tokens or 0)
            ledger.add_examples(1)  # under the lock: the request threads share the ledger
        return reply

    def served_models(self) -> list[str]:
        """The ids GET /models lists. Raises the client's typed errors as they are (a status error
        keeps its status_code), so a caller can tell an unreachable endpoint from a refused key."""
        return [m.id for m in self.client.models.list(extra_headers=self._headers)]

    def _call(self, kwargs: dict, parse: Callable[[Any], Any]) -> Any:
        key = json.dumps(kwargs, sort_keys=True)
        if key not in self._memo:
            reply = self._send(kwargs, choice="logprobs" in kwargs)
            try:
                self._memo[key] = parse(reply)
            except (KeyError, IndexError, TypeError, AttributeError, ValueError) as e:
                shape = _one_line(reply.model_dump_json(exclude_unset=True, warnings=False), 200)
                raise EngineError(f"{self.shown_url}: unexpected reply shape ({type(e).__name__}: {e}): {shape}") from None
        return self._memo[key]

    # -- many requests ---------------------------------------------------------------------------

    def _run(self, make: Callable[[int], tuple[dict, Callable[[Any], Any]]], n: int, desc: str) -> list[Any]:
        results: list[Any] = [None] * n
        failures: list[tuple[int, EngineError]] = []
        stop = self.client.stopped
        stop.clear()

        def work(i: int) -> None:
            if stop.is_set():
                return
            try:
                kwargs, parse = make(i)
                results[i] = self._call(kwargs, parse)
            except _Stopped:
                pass
            except EngineError as e:
                failures.append((i, e))
                stop.set()

        with ThreadPoolExecutor(max_workers=max(1, self.cfg.concurrency)) as pool, tqdm(
            total=n, desc=desc, unit="request"
        ) as bar:
            for f in as_completed([pool.submit(work, i) for i in range(n)]):
                f.result()
                bar.update(1)
        if failures:
            i, e = min(failures, key=lambda x: x[0])
            done = sum(r is not None for r in results)
            raise type(e)(  # the one exit of every failure: a body or a client error may quote a credential
                redact_text(f"{e} (request {i}); the {done} of {n} answers received are kept in the error's "
                            "partial results"),
                partial=results,
            )
        return results

    # -- Engine ----------------------------------------------------------------------------------

    def _prompt(self, messages: Messages, assistant_prefix: str = "") -> str:
        """The completions api's prompt text; the BOS the template writes is left to the server."""
        if self.tok is None:
            return render_plain(messages, assistant_prefix=assistant_prefix)
        if self.max_input_tokens > 0:  # the one truncation rule, as the local engines apply it
            ids = encode(self.tok, messages, assistant_prefix, max_tokens=self.max_input_tokens)
            return for_server(self.tok, self.tok.decode(ids))
        return for_server(self.tok, render(self.tok, messages, assistant_prefix=assistant_prefix))

    def generate(self, requests: Sequence[Messages], sampling: Sampling, *, desc: str = "generate") -> list[str]:
        def make(i: int):
            kwargs = {
                "model": self.model,
                "max_tokens": sampling.max_new_tokens,
                "temperature": sampling.temperature,
                "top_p": sampling.top_p if sampling.temperature > 0 else 1.0,
                "seed": sampling.seed,
            }
            if self.api == "completions":
                return {**kwargs, "prompt": self._prompt(requests[i])}, \
                    lambda reply: (reply.choices[0].text or "").strip()
            return {**kwargs, "messages": list(requests[i])}, \
                lambda reply: (reply.choices[0].message.content or "").strip()

        return self._run(make, len(requests), desc)

    def choice_logprobs(
        self, requests: Sequence[Messages], choices: Sequence[str], *, assistant_prefix: str = "", desc: str = "score"
    ) -> list[dict[str, float]]:
        def collect(pairs) -> dict[str, float]:
            got: dict[str, list[float]] = {c: [] for c in choices}
            for token, logprob in pairs:
                if str(token).strip() in got:
                    got[str(token).strip()].append(float(logprob))
            return {c: logsumexp(v) if v else -math.inf for c, v in got.items()}

        def no_logprobs() -> LogprobsUnsupported:
            return LogprobsUnsupported(f"{self.shown_url}: the reply carries no logprobs for model '{self.model}'")

        def parse_chat(reply: ChatCompletion) -> dict[str, float]:
            lp = reply.choices[0].logprobs
            content = (lp.content if lp is not None else None) or []
            if not content:
                raise no_logprobs()
            return collect((entry.token, entry.logprob) for entry in content[0].top_logprobs or [])

        def parse_completion(reply: Completion) -> dict[str, float]:
            lp = reply.choices[0].logprobs
            tops = (lp.top_logprobs if lp is not None else None) or []
            if not tops or not tops[0]:
                raise no_logprobs()
            return collect(tops[0].items())

        def make(i: int):
            kwargs = {"model": self.model, "max_tokens": 1, "temperature": 0.0}
            if self.api == "completions":
                return {**kwargs, "prompt": self._prompt(requests[i], assistant_prefix),
                        "logprobs": TOP_LOGPROBS}, parse_completion
            msgs = list(requests[i])
            kwargs.update(logprobs=True, top_logprobs=TOP_LOGPROBS)
            if assistant_prefix and self.prefix_mode != "none":
                msgs.append({"role": "assistant", "content": assistant_prefix})
                kwargs["extra_body"] = {"continue_final_message": True, "add_generation_prompt": False}  # vLLM's
            return {**kwargs, "messages": msgs}, parse_chat

        try:
            return self._run(make, len(requests), desc)
        except RequestRejected as e:
            if not (assistant_prefix and self.api == "chat" and self.prefix_mode == "auto"
                    and not isinstance(e, PromptTooLong)):
                raise
            log.warning("%s rejected continue_final_message; reading the first reply token instead", self.shown_url)
            self.prefix_mode = "none"
            return self._run(make, len(requests), desc)

    def close(self) -> None:
        if self.usage["requests"]:
            log.info("%s: %d requests answered, %d prompt and %d completion tokens", self.shown_url,
                     self.usage["requests"], self.usage["prompt_tokens"], self.usage["completion_tokens"])
        self.client.close()
