"""``openai_api``: any OpenAI-compatible chat-completions server (vLLM, SGLang, TGI, ...).

Images travel as base64 JPEG data URLs. Requests run concurrently up to ``concurrency``;
429, 5xx, timeouts and connection errors are retried with exponential back-off (honouring
``Retry-After``); when retries run out the batch raises ``CaptionerUnavailable`` so the shard
is retried later. Other 4xx answers fail only their sample (``RawCaption.error``).
"""

from __future__ import annotations

import base64
import io
import json
import logging
import os
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from captioners.base import CaptionContext, CaptionerUnavailable, RawCaption, check_batch
from captioners.prompts import DEFAULT_PROMPT_VERSION, Prompt, PromptVersion, get_prompt
from manifests.fingerprint import OPERATIONAL

log = logging.getLogger(__name__)

_RETRY_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})


class OpenAiApiConfig(BaseModel):
    """Server, model, credentials and request policy."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["openai_api"] = "openai_api"
    base_url: str = "http://127.0.0.1:8000/v1"  # vLLM's default address
    model: str
    # The name of the environment variable holding the key: credentials, not what is computed.
    api_key_env: str | None = Field(None, json_schema_extra=OPERATIONAL)
    prompt_version: PromptVersion = DEFAULT_PROMPT_VERSION
    short_caption: bool = False
    max_tokens: int = Field(256, gt=0)
    short_max_tokens: int = Field(48, gt=0)
    temperature: float = Field(0.0, ge=0)
    top_p: float = Field(1.0, gt=0, le=1)
    seed: int | None = 0
    concurrency: int = Field(8, gt=0, json_schema_extra=OPERATIONAL)  # requests in flight
    timeout_s: float = Field(120.0, gt=0)
    max_retries: int = Field(4, ge=0)
    backoff_s: float = Field(1.0, ge=0)  # first wait; doubles per retry
    max_backoff_s: float = Field(30.0, ge=0)
    jpeg_quality: int = Field(90, ge=1, le=100)
    max_image_side: int | None = Field(1024, gt=0)

    def build(self) -> OpenAiApiCaptioner:
        key = None
        if self.api_key_env is not None:
            key = os.environ.get(self.api_key_env)
            if not key:
                raise ValueError(f"openai_api: environment variable {self.api_key_env} is unset")
        return OpenAiApiCaptioner(self, key)


def image_data_url(image: np.ndarray, quality: int = 90, max_side: int | None = None) -> str:
    """A ``data:image/jpeg;base64,...`` URL of an RGB array (downscaled to ``max_side``)."""
    from PIL import Image

    pil = Image.fromarray(image)
    if max_side is not None and max(pil.size) > max_side:
        pil.thumbnail((max_side, max_side), Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    pil.save(buffer, format="JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


@dataclass(frozen=True)
class _Answer:
    text: str
    tokens: int
    error: str | None = None


class _Retryable(Exception):
    def __init__(self, why: str, wait_s: float | None = None) -> None:
        super().__init__(why)
        self.wait_s = wait_s


class OpenAiApiCaptioner:
    """Captions through ``POST {base_url}/chat/completions``, one request per image and prompt."""

    needs_pixels = True

    def __init__(self, config: OpenAiApiConfig, api_key: str | None) -> None:
        self.config = config
        self.model = f"openai_api:{config.model}"
        self.prompt_version = config.prompt_version
        self.prompt: Prompt = get_prompt(config.prompt_version)
        self._url = config.base_url.rstrip("/") + "/chat/completions"
        self._headers = {"Content-Type": "application/json"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"

    def caption(
        self, images: Sequence[np.ndarray], contexts: Sequence[CaptionContext]
    ) -> list[RawCaption]:
        check_batch(images, contexts, self.needs_pixels)
        with ThreadPoolExecutor(max_workers=self.config.concurrency) as pool:
            return list(pool.map(self._caption_one, images, contexts))

    def _caption_one(self, image: np.ndarray, context: CaptionContext) -> RawCaption:
        start = time.perf_counter()
        c = self.config
        url = image_data_url(image, c.jpeg_quality, c.max_image_side)
        long = self._ask(url, self.prompt.render_long(context), c.max_tokens)
        short = None
        if c.short_caption and long.error is None:
            short = self._ask(url, self.prompt.render_short(context), c.short_max_tokens)
        return RawCaption(
            text=long.text,
            short=short.text if short else None,
            generated_tokens=long.tokens + (short.tokens if short else 0),
            seconds=time.perf_counter() - start,
            error=long.error,
        )

    def payload(self, data_url: str, prompt: str, max_tokens: int) -> dict[str, Any]:
        """The chat-completions request body for one image and prompt."""
        content = [
            {"type": "image_url", "image_url": {"url": data_url}},
            {"type": "text", "text": prompt},
        ]
        body: dict[str, Any] = {
            "model": self.config.model,
            "messages": [{"role": "user", "content": content}],
            "max_tokens": max_tokens,
            "temperature": self.config.temperature,
            "top_p": self.config.top_p,
        }
        if self.config.seed is not None:
            body["seed"] = self.config.seed
        return body

    def _ask(self, data_url: str, prompt: str, max_tokens: int) -> _Answer:
        body = json.dumps(self.payload(data_url, prompt, max_tokens)).encode()
        for attempt in range(self.config.max_retries + 1):
            try:
                return self._post(body)
            except _Retryable as err:
                if attempt == self.config.max_retries:
                    raise CaptionerUnavailable(
                        f"{self._url}: {err} after {attempt + 1} attempts"
                    ) from err
                wait = self._backoff(attempt, err.wait_s)
                log.warning("%s: %s; retry %d in %.1f s", self._url, err, attempt + 1, wait)
                time.sleep(wait)
        raise AssertionError("unreachable")  # pragma: no cover

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        wait = self.config.backoff_s * 2**attempt
        if retry_after is not None:
            wait = max(wait, retry_after)
        return min(wait, self.config.max_backoff_s)

    def _post(self, body: bytes) -> _Answer:
        request = urllib.request.Request(self._url, body, self._headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.config.timeout_s) as response:
                return _parse(json.loads(response.read()))
        except urllib.error.HTTPError as err:
            detail = err.read().decode(errors="replace")[:200]
            if err.code in _RETRY_STATUS:
                raise _Retryable(f"HTTP {err.code}", _retry_after(err.headers)) from err
            return _Answer("", 0, error=f"HTTP {err.code}: {detail}")
        except (TimeoutError, urllib.error.URLError, ConnectionError) as err:
            raise _Retryable(f"{type(err).__name__}: {err}") from err


def _retry_after(headers: Any) -> float | None:
    value = headers.get("Retry-After") if headers is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _parse(answer: dict[str, Any]) -> _Answer:
    try:
        text = answer["choices"][0]["message"]["content"] or ""
    except (KeyError, IndexError, TypeError):
        return _Answer("", 0, error=f"malformed answer: {json.dumps(answer)[:200]}")
    tokens = int((answer.get("usage") or {}).get("completion_tokens") or 0)
    return _Answer(str(text), tokens)
