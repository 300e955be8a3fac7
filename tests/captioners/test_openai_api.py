"""``openai_api`` against a real chat-completions server on loopback."""

from __future__ import annotations

import base64
import io
import json
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from PIL import Image

from captioners import (
    AttributesConfig,
    CaptionContext,
    CaptionerUnavailable,
    CleaningConfig,
    OpenAiApiConfig,
    caption_batch,
    get_prompt,
)
from pipeline.loopback import QuietHandler, Response, serve_loopback

SLOW_S = 30.0


@dataclass
class FakeServer:
    """Answers scripted behaviours in order ("ok", "429", "500", "503", "400", "slow"),
    then "ok"; records every request."""

    url: str = ""
    script: deque[str] = field(default_factory=deque)
    requests: list[dict[str, Any]] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    delay_s: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)


def _handler(server: FakeServer) -> type[QuietHandler]:
    class Handler(QuietHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with server.lock:
                server.requests.append({"path": self.path, "headers": dict(self.headers), **body})
                behaviour = server.script.popleft() if server.script else "ok"
                server.in_flight += 1
                server.max_in_flight = max(server.max_in_flight, server.in_flight)
            try:
                response = _answer(behaviour, len(server.requests), server.delay_s)
            finally:
                # Out of flight before a byte of the answer leaves: the client may send its
                # next request as soon as this one's answer arrives, and that one must not
                # count as a third in flight.
                with server.lock:
                    server.in_flight -= 1
            self.send(response)

    return Handler


def _answer(behaviour: str, number: int, delay_s: float) -> Response:
    # "slow" answers far beyond any timeout a test sets, so a loaded machine cannot make it
    # arrive in time; good answers get timeouts far above their milliseconds.
    time.sleep(SLOW_S if behaviour == "slow" else delay_s)
    if behaviour in ("429", "500", "503", "400"):
        return int(behaviour), {"Retry-After": "0"}, b'{"error": "scripted"}'
    answer = {
        "choices": [{"message": {"role": "assistant", "content": f"The image shows "
                                 f"person {number} smiling."}}],
        "usage": {"completion_tokens": 7},
    }  # fmt: skip
    return 200, {"Content-Type": "application/json"}, json.dumps(answer).encode()


@pytest.fixture
def server() -> Iterator[FakeServer]:
    state = FakeServer()
    with serve_loopback(_handler(state), "chat-server") as port:
        state.url = f"http://127.0.0.1:{port}/v1"
        yield state


def _config(server: FakeServer, **kwargs: Any) -> OpenAiApiConfig:
    defaults: dict[str, Any] = {"base_url": server.url, "model": "qwen2.5-vl-7b", "backoff_s": 0.01}
    return OpenAiApiConfig(**{**defaults, **kwargs})


def test_request_carries_model_prompt_image_and_key(
    server: FakeServer, photos: dict[str, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CAPTION_API_KEY", "sekrit")
    captioner = _config(server, api_key_env="CAPTION_API_KEY", max_image_side=256).build()
    context = CaptionContext("a", "Eileen Collins")
    [raw] = captioner.caption([photos["astronaut"]], [context])
    assert (raw.text, raw.generated_tokens, raw.error) == (
        "The image shows person 1 smiling.",
        7,
        None,
    )
    [request] = server.requests
    assert request["path"] == "/v1/chat/completions"
    assert request["headers"]["Authorization"] == "Bearer sekrit"
    assert (request["model"], request["max_tokens"], request["temperature"]) == (
        "qwen2.5-vl-7b",
        256,
        0.0,
    )
    image_part, text_part = request["messages"][0]["content"]
    assert text_part == {"type": "text", "text": get_prompt("v1").render_long(context)}
    prefix = "data:image/jpeg;base64,"
    assert image_part["image_url"]["url"].startswith(prefix)
    jpeg = base64.b64decode(image_part["image_url"]["url"][len(prefix) :])
    assert Image.open(io.BytesIO(jpeg)).size == (256, 256)
    assert captioner.model == "openai_api:qwen2.5-vl-7b"


def test_retries_429_and_5xx_with_backoff(server: FakeServer, photos: dict) -> None:
    server.script.extend(["429", "500", "503"])
    captioner = _config(server, concurrency=1, max_retries=3).build()
    [raw] = captioner.caption([photos["coffee"]], [CaptionContext("c")])
    assert raw.text == "The image shows person 4 smiling." and len(server.requests) == 4
    assert "Authorization" not in server.requests[0]["headers"]


def test_slow_reply_times_out_and_is_retried(server: FakeServer, photos: dict) -> None:
    server.script.append("slow")
    captioner = _config(server, timeout_s=3.0, max_retries=1).build()
    [raw] = captioner.caption([photos["coffee"]], [CaptionContext("c")])
    assert raw.text == "The image shows person 2 smiling."


def test_exhausted_retries_make_the_batch_fail(server: FakeServer, photos: dict) -> None:
    server.script.extend(["503", "503", "503"])
    captioner = _config(server, concurrency=1, max_retries=2).build()
    with pytest.raises(CaptionerUnavailable, match="HTTP 503 after 3 attempts"):
        captioner.caption([photos["coffee"]], [CaptionContext("c")])


def test_client_error_fails_one_sample_and_the_fallback_captions_it(
    server: FakeServer, photos: dict
) -> None:
    server.script.append("400")
    captioner = _config(server, concurrency=1).build()
    contexts = [CaptionContext("bad", "a cup of coffee"), CaptionContext("good")]
    batch = caption_batch(
        captioner, [photos["coffee"], photos["astronaut"]], contexts, CleaningConfig(),
        fallback=AttributesConfig().build(),
    )  # fmt: skip
    bad, good = batch.records
    assert (bad.caption, bad.model, bad.error) == (
        'A photo captioned "a cup of coffee".',
        "attributes",
        'HTTP 400: {"error": "scripted"}',
    )
    assert (good.caption, good.model, good.prompt_version) == (
        "Person 2 smiling.",
        "openai_api:qwen2.5-vl-7b",
        "v1",
    )
    assert (batch.stats.errors, batch.stats.fallbacks, batch.stats.missing) == (1, 1, 0)
    assert batch.stats.generated_tokens == 7


def test_concurrency_limit_and_short_captions(server: FakeServer, photos: dict) -> None:
    server.delay_s = 0.5  # long enough that two requests overlap even on a loaded machine
    captioner = _config(server, concurrency=2, short_caption=True, short_max_tokens=20).build()
    images = [photos[name] for name in ("astronaut", "coffee", "rocket", "grace_hopper")]
    raws = captioner.caption(images, [CaptionContext(str(i)) for i in range(4)])
    assert server.max_in_flight == 2 and len(server.requests) == 8
    assert sorted(r["max_tokens"] for r in server.requests) == [20] * 4 + [256] * 4
    assert all(r.short and r.generated_tokens == 14 for r in raws)


def test_missing_api_key_variable_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_SUCH_KEY", raising=False)
    with pytest.raises(ValueError, match="NO_SUCH_KEY"):
        OpenAiApiConfig(model="m", api_key_env="NO_SUCH_KEY").build()
