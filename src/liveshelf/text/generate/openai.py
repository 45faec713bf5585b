"""The ``openai`` backend: any OpenAI-compatible chat endpoint (vLLM, Ollama, llama.cpp server, hosted APIs).

``POST {base_url}/chat/completions`` with ``model``, ``messages``, ``max_tokens`` and
``temperature`` (0 for the draft, ``temperature`` for the regeneration), through httpx with a
per-request ``timeout``. Timeouts, connection errors, 429 and 5xx answers are retried
``retries`` times with exponential backoff (``backoff * 2 ** k`` seconds); other 4xx answers and
malformed bodies are not retried. A call that still fails gives no draft, and the request ends
in the ``grounded`` fallback with the failure as ``fallback_reason``; so do drafts that fail the
grounding check twice (see :class:`liveshelf.text.generate.model.ModelGenerator`).
Requests run ``concurrency`` at a time.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import httpx

from liveshelf.errors import check_param
from liveshelf.text.generate.base import Generator
from liveshelf.text.generate.model import ModelGenerator

_RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


class OpenAIGenerator(ModelGenerator):
    """Drafts from an OpenAI-compatible ``/chat/completions`` endpoint."""

    name = "openai"

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        timeout: float = 10.0,
        retries: int = 2,
        backoff: float = 0.5,
        max_tokens: int = 96,
        temperature: float = 0.7,
        concurrency: int = 4,
        fallback: Generator | None = None,
        known_brands: Sequence[str] = (),
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        where = "OpenAIGenerator"
        check_param(
            "base_url",
            base_url,
            isinstance(base_url, str) and base_url.startswith(("http://", "https://")),
            "an http(s) URL such as 'http://127.0.0.1:8000/v1'",
            where,
        )
        check_param(
            "timeout",
            timeout,
            isinstance(timeout, (int, float)) and timeout > 0,
            "a number of seconds > 0",
            where,
        )
        check_param("retries", retries, isinstance(retries, int) and retries >= 0, "an int >= 0", where)
        check_param(
            "max_tokens", max_tokens, isinstance(max_tokens, int) and max_tokens >= 1, "an int >= 1", where
        )
        check_param(
            "concurrency",
            concurrency,
            isinstance(concurrency, int) and concurrency >= 1,
            "an int >= 1",
            where,
        )
        super().__init__(fallback=fallback, known_brands=known_brands)
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.timeout = float(timeout)
        self.retries = retries
        self.backoff = float(backoff)
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.concurrency = concurrency
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(timeout=self.timeout, headers=headers, transport=transport)
        self.calls_ = 0
        self.errors_: list[str] = []

    def close(self) -> None:
        self._client.close()

    def chat(self, messages: list[dict[str, str]], temperature: float) -> str | None:
        """One completion with retries; None (and a line in ``errors_``) when every try fails."""
        body = {
            "model": self.model,
            "messages": messages,
            "max_tokens": self.max_tokens,
            "temperature": temperature,
        }
        last = ""
        for k in range(self.retries + 1):
            if k:
                time.sleep(self.backoff * 2 ** (k - 1))
            self.calls_ += 1
            try:
                resp = self._client.post(f"{self.base_url}/chat/completions", json=body)
            except (httpx.TimeoutException, httpx.TransportError) as exc:
                last = f"{type(exc).__name__}"
                continue
            if resp.status_code in _RETRY_STATUS:
                last = f"HTTP {resp.status_code}"
                continue
            if resp.status_code >= 400:
                self.errors_.append(f"HTTP {resp.status_code}")
                return None
            try:
                content = resp.json()["choices"][0]["message"]["content"]
            except (ValueError, KeyError, IndexError, TypeError):
                self.errors_.append("malformed response body")
                return None
            return str(content) if content is not None else None
        self.errors_.append(last)
        return None

    def complete(self, prompts: list[list[dict[str, str]]], attempt: int) -> list[str | None]:
        temp = 0.0 if attempt == 0 else self.temperature
        if self.concurrency == 1 or len(prompts) == 1:
            return [self.chat(m, temp) for m in prompts]
        with ThreadPoolExecutor(self.concurrency) as pool:
            return list(pool.map(lambda m: self.chat(m, temp), prompts))
