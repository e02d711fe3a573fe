"""Any OpenAI-compatible chat endpoint (a vLLM server, a hosted judge) over plain HTTP with httpx.

Requests go out concurrently from a thread pool. Timeouts, connection errors, HTTP 429 and 5xx are
retried with exponential backoff (a Retry-After header wins); other 4xx, a body that is not JSON
or a reply of the wrong shape fail at once. When a request still fails, the in-flight ones finish
and an EngineError names the endpoint and the status, carrying every answer that did arrive in
`.partial`. Answers are also remembered by the engine, so calling again re-sends only the missing.

`api: completions` sends /completions with the prompt text rendered by humpback.rendering (the
model directory's tokenizer where there is one, else our plain format), the way training rendered
it; the prefix is appended to that text, and top log-probabilities are read from `logprobs`.

`assistant_prefix` for choice_logprobs (chat api): the prefix goes out as a final assistant message with
vLLM's `continue_final_message: true, add_generation_prompt: false`, so the model continues it.
Endpoints that reject those fields (HTTP 400/422) are asked again without the prefix, reading the
first reply token (prefix_mode: auto); prefix_mode: none never sends it.

Credentials never leave in text: every error and log line names the endpoint as `redact_url` writes
it (no userinfo, no `?api_key=`), the key read from `api_key_env` is registered so that a reply
echoing it is redacted too, and the HTTP client's own request log goes through the same filter.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
from tqdm.auto import tqdm

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


for _name in ("httpx", "httpcore"):  # httpx logs every request's URL, userinfo and query included
    install_redaction(logging.getLogger(_name))


def endpoint_url(base_url: str, route: str) -> str:
    """`route` appended to the base URL's path; its query (`?api-version=`, `?key=`) stays a query."""
    parts = urlsplit(base_url.strip())
    return urlunsplit(parts._replace(path=parts.path.rstrip("/") + route))


class LogprobsUnsupported(EngineError, NotImplementedError):
    """The endpoint answered without log-probabilities; callers may fall back to parsing text."""


class RequestRejected(EngineError):
    """HTTP 400/422: the endpoint refused the request (often a field it does not know); not retried."""


class _Stopped(Exception):
    """Another request failed for good; stop retrying this one."""


class OpenAIEngine(Engine):
    name = "openai"

    def __init__(self, cfg: OpenAIConfig, model: str = "", *, transport: httpx.BaseTransport | None = None,
                 tokenizer=None, max_input_tokens: int = 0):
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
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(cfg.api_key_env, "") if cfg.api_key_env else ""
        if key:
            register_secret(key)
            headers["Authorization"] = f"Bearer {key}"
        self.client = httpx.Client(
            headers=headers,
            timeout=httpx.Timeout(cfg.timeout),
            transport=transport,
            limits=httpx.Limits(max_connections=max(1, cfg.concurrency)),
        )
        self.prefix_mode = cfg.prefix_mode
        self._memo: dict[str, Any] = {}

    # -- one request -----------------------------------------------------------------------------

    def _post(self, payload: dict, stop: threading.Event) -> dict:
        """POST with retries; returns the parsed JSON body or raises an EngineError."""
        cfg, last = self.cfg, ""
        for attempt in range(cfg.max_retries + 1):
            wait = cfg.backoff * 2**attempt
            try:
                r = self.client.post(self.url, json=payload)
            except httpx.TimeoutException:
                last = f"timed out after {cfg.timeout:g}s"
            except httpx.TransportError as e:
                last = f"connection failed ({type(e).__name__}: {e})"
            else:
                if r.status_code == 200:
                    try:
                        return r.json()
                    except ValueError:
                        raise EngineError(f"{self.shown_url}: HTTP 200 but the body is not JSON: {r.text[:200]!r}") from None
                body = r.text[:300].replace("\n", " ")
                if r.status_code in (400, 422):
                    raise RequestRejected(f"{self.shown_url}: HTTP {r.status_code}: {body}")
                if r.status_code != 429 and r.status_code < 500:
                    raise EngineError(f"{self.shown_url}: HTTP {r.status_code}: {body}")
                last = f"HTTP {r.status_code}: {body}"
                retry_after = r.headers.get("retry-after", "")
                if retry_after.replace(".", "", 1).isdigit():
                    wait = float(retry_after)
            if attempt < cfg.max_retries and stop.wait(min(wait, 60.0)):
                raise _Stopped
        raise EngineError(f"{self.shown_url}: gave up after {cfg.max_retries + 1} attempts; last error: {last}")

    def _call(self, payload: dict, parse: Callable[[dict], Any], stop: threading.Event) -> Any:
        key = json.dumps(payload, sort_keys=True)
        if key not in self._memo:
            body = self._post(payload, stop)
            try:
                self._memo[key] = parse(body)
            except (KeyError, IndexError, TypeError, AttributeError) as e:
                raise EngineError(f"{self.shown_url}: unexpected reply shape ({type(e).__name__}: {e}): {str(body)[:200]}") from None
        return self._memo[key]

    # -- many requests ---------------------------------------------------------------------------

    def _run(self, make: Callable[[int], tuple[dict, Callable[[dict], Any]]], n: int, desc: str) -> list[Any]:
        results: list[Any] = [None] * n
        failures: list[tuple[int, EngineError]] = []
        stop = threading.Event()

        def work(i: int) -> None:
            if stop.is_set():
                return
            try:
                payload, parse = make(i)
                results[i] = self._call(payload, parse, stop)
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
            payload = {
                "model": self.model,
                "max_tokens": sampling.max_new_tokens,
                "temperature": sampling.temperature,
                "top_p": sampling.top_p if sampling.temperature > 0 else 1.0,
                "seed": sampling.seed,
            }
            if self.api == "completions":
                return {**payload, "prompt": self._prompt(requests[i])}, \
                    lambda body: (body["choices"][0]["text"] or "").strip()
            payload["messages"] = list(requests[i])
            return payload, lambda body: (body["choices"][0]["message"]["content"] or "").strip()

        return self._run(make, len(requests), desc)

    def choice_logprobs(
        self, requests: Sequence[Messages], choices: Sequence[str], *, assistant_prefix: str = "", desc: str = "score"
    ) -> list[dict[str, float]]:
        def parse(body: dict) -> dict[str, float]:
            lp = body["choices"][0].get("logprobs")
            content = (lp or {}).get("content") or []
            if not content:
                raise LogprobsUnsupported(f"{self.shown_url}: the reply carries no logprobs for model '{self.model}'")
            top = content[0].get("top_logprobs") or []
            got: dict[str, list[float]] = {c: [] for c in choices}
            for entry in top:
                tok = str(entry["token"]).strip()
                if tok in got:
                    got[tok].append(float(entry["logprob"]))
            return {c: logsumexp(v) if v else -math.inf for c, v in got.items()}

        def payload(i: int, with_prefix: bool) -> dict:
            msgs = list(requests[i])
            p = {
                "model": self.model,
                "max_tokens": 1,
                "temperature": 0.0,
                "logprobs": True,
                "top_logprobs": TOP_LOGPROBS,
            }
            if with_prefix:
                msgs.append({"role": "assistant", "content": assistant_prefix})
                p.update(continue_final_message=True, add_generation_prompt=False)
            return {**p, "messages": msgs}

        def parse_completion(body: dict) -> dict[str, float]:
            tops = (body["choices"][0].get("logprobs") or {}).get("top_logprobs") or []
            if not tops or not tops[0]:
                raise LogprobsUnsupported(f"{self.shown_url}: the reply carries no logprobs for model '{self.model}'")
            got: dict[str, list[float]] = {c: [] for c in choices}
            for token, logprob in tops[0].items():
                if str(token).strip() in got:
                    got[str(token).strip()].append(float(logprob))
            return {c: logsumexp(v) if v else -math.inf for c, v in got.items()}

        def make(i: int):
            if self.api == "completions":
                return {"model": self.model, "prompt": self._prompt(requests[i], assistant_prefix), "max_tokens": 1,
                        "temperature": 0.0, "logprobs": TOP_LOGPROBS}, parse_completion
            return payload(i, bool(assistant_prefix) and self.prefix_mode != "none"), parse

        try:
            return self._run(make, len(requests), desc)
        except EngineError as e:
            if not (assistant_prefix and self.api == "chat" and self.prefix_mode == "auto"
                    and isinstance(e, RequestRejected)):
                raise
            log.warning("%s rejected continue_final_message; reading the first reply token instead", self.shown_url)
            self.prefix_mode = "none"
            return self._run(make, len(requests), desc)

    def close(self) -> None:
        self.client.close()
