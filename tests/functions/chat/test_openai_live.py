"""The OpenAI-compatible API, driven by the official `openai` client against a live server."""

import httpx
import openai
import pytest

from tests.conftest import LiveServer
from tests.functions.chat.sse_client import register_http

pytestmark = pytest.mark.slow


@pytest.fixture
def client(live_server: LiveServer) -> openai.OpenAI:
    token = register_http(live_server.url)["Authorization"].removeprefix("Bearer ")
    return openai.OpenAI(base_url=f"{live_server.url}/v1", api_key=token, max_retries=0)


def test_models_lists_the_loaded_model(client: openai.OpenAI) -> None:
    models = client.models.list()
    assert len(models.data) == 1 and models.data[0].id


def test_chat_completion_without_streaming(client: openai.OpenAI) -> None:
    model = client.models.list().data[0].id
    completion = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Hello!"}], temperature=0, max_tokens=24
    )
    choice = completion.choices[0]
    assert choice.message.role == "assistant" and choice.message.content.strip()
    assert choice.finish_reason in ("stop", "length")
    assert completion.usage.completion_tokens >= 1 and completion.usage.prompt_tokens > 0


def test_chat_completion_streaming_matches_the_non_streamed_answer(client: openai.OpenAI) -> None:
    model = client.models.list().data[0].id
    messages = [{"role": "user", "content": "What does ocean mean?"}]
    whole = client.chat.completions.create(model=model, messages=messages, temperature=0, max_tokens=24)
    chunks = list(
        client.chat.completions.create(
            model=model, messages=messages, temperature=0, max_tokens=24, stream=True
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert streamed == whole.choices[0].message.content
    assert chunks[-1].choices[0].finish_reason == whole.choices[0].finish_reason


def test_wrong_token_is_refused(live_server: LiveServer) -> None:
    bad = openai.OpenAI(base_url=f"{live_server.url}/v1", api_key="not-a-token", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()


def test_raw_stream_ends_with_done(live_server: LiveServer) -> None:
    headers = register_http(live_server.url)
    body = {"model": "slm", "messages": [{"role": "user", "content": "Hi"}], "stream": True, "max_tokens": 4}
    with httpx.stream(
        "POST", f"{live_server.url}/v1/chat/completions", json=body, headers=headers
    ) as response:
        lines = [line for line in response.iter_lines() if line]
    assert lines[-1] == "data: [DONE]" and all(line.startswith("data: ") for line in lines)
