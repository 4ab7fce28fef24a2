"""Inference backends the optimizer talks to: plain HTTP, no vendor SDK.

``OpenAICompatibleBackend`` speaks the chat-completions API (OpenAI, vLLM, Ollama, LM Studio, llama.cpp
server); ``AnthropicBackend`` speaks the Messages API. Both retry connection errors, timeouts, 429 and 5xx
with exponential backoff, and raise :class:`BackendError` with the endpoint and the last cause.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request
from abc import ABC, abstractmethod
from typing import Any, Protocol

from pydantic import SecretStr

from learning.errors import ConfigError, TracelearnError

log = logging.getLogger(__name__)


class BackendError(TracelearnError):
    """The optimizer's LLM endpoint did not give an answer."""


class InferenceBackend(Protocol):
    def generate(self, prompt: str, *, model: str, system: str, temperature: float, max_tokens: int) -> str: ...


def _secret(key: SecretStr | str | None) -> SecretStr | None:
    if key is None or isinstance(key, SecretStr):
        return key
    return SecretStr(key)


class _HttpBackend(ABC):
    def __init__(
        self,
        base_url: str,
        api_key: SecretStr | str | None = None,
        *,
        timeout: float = 60.0,
        max_retries: int = 3,
        backoff: float = 0.5,
    ) -> None:
        if max_retries < 0 or timeout <= 0 or backoff < 0:
            raise ConfigError("timeout must be > 0, max_retries and backoff >= 0")
        self.base_url = base_url.rstrip("/")
        self.api_key = _secret(api_key)
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff

    def __repr__(self) -> str:  # never show the key
        return f"{type(self).__name__}({self.base_url!r})"

    @abstractmethod
    def _headers(self) -> dict[str, str]: ...

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        url = self.base_url + path
        data = json.dumps(body).encode()
        last = ""
        for attempt in range(self.max_retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            request = urllib.request.Request(url, data=data, headers=self._headers(), method="POST")
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    payload = json.loads(response.read())
                if not isinstance(payload, dict):
                    raise BackendError(f"{url}: the response is not a JSON object")
                return payload
            except urllib.error.HTTPError as exc:
                detail = exc.read()[:300].decode("utf-8", "replace")
                last = f"HTTP {exc.code}: {detail}"
                if exc.code != 429 and exc.code < 500:
                    raise BackendError(f"{url}: {last}") from exc
            except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
                reason = getattr(exc, "reason", exc)
                last = f"timed out after {self.timeout:g} s" if isinstance(reason, TimeoutError) else str(reason)
            except ValueError as exc:  # a body that is not JSON: a proxy error page, a truncated answer
                last = f"unreadable response: {exc}"
            log.warning("optimizer backend %s: attempt %d failed: %s", url, attempt + 1, last)
        raise BackendError(f"{url}: no answer after {self.max_retries + 1} attempts; last error: {last}")


class OpenAICompatibleBackend(_HttpBackend):
    """Chat completions at ``{base_url}/chat/completions`` (base_url ends in /v1 for most servers)."""

    def __init__(self, base_url: str = "http://localhost:8000/v1", api_key: SecretStr | str | None = None, **kw: Any):
        super().__init__(base_url, api_key, **kw)

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self.api_key is not None:
            headers["Authorization"] = f"Bearer {self.api_key.get_secret_value()}"
        return headers

    def generate(self, prompt: str, *, model: str, system: str, temperature: float, max_tokens: int) -> str:
        body = {
            "model": model,
            "messages": [{"role": "system", "content": system}, {"role": "user", "content": prompt}],
            "temperature": temperature,
            "max_tokens": max_tokens,
        }
        payload = self._post("/chat/completions", body)
        try:
            content = payload["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError) as exc:
            raise BackendError(f"{self.base_url}: no choices[0].message.content in the answer") from exc
        return str(content or "")


class AnthropicBackend(_HttpBackend):
    """The Messages API at ``{base_url}/v1/messages``."""

    def __init__(
        self,
        base_url: str = "https://api.anthropic.com",
        api_key: SecretStr | str | None = None,
        *,
        anthropic_version: str = "2023-06-01",
        **kw: Any,
    ):
        super().__init__(base_url, api_key, **kw)
        self.anthropic_version = anthropic_version

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "anthropic-version": self.anthropic_version}
        if self.api_key is not None:
            headers["x-api-key"] = self.api_key.get_secret_value()
        return headers

    def generate(self, prompt: str, *, model: str, system: str, temperature: float, max_tokens: int) -> str:
        body = {
            "model": model,
            "system": system,
            "messages": [{"role": "user", "content": prompt}],
            "temperature": temperature,
            "max_tokens": max_tokens,
        }
        payload = self._post("/v1/messages", body)
        blocks = payload.get("content")
        if not isinstance(blocks, list):
            raise BackendError(f"{self.base_url}: no content blocks in the answer")
        return "".join(str(b.get("text", "")) for b in blocks if isinstance(b, dict) and b.get("type") == "text")
