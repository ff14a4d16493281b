"""The OpenAI-compatible API, driven by the official `openai` client against a live server."""

import httpx
import openai
import pytest

from tests.functions.chat.sse_client import register_http
from tests.helpers import LiveServer

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


def api_key(live_server: LiveServer, headers: dict[str, str]) -> dict:
    response = httpx.post(f"{live_server.url}/api/auth/keys", json={"name": "sdk"}, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


def test_an_api_key_works_with_the_official_client_until_revoked(live_server: LiveServer) -> None:
    headers = register_http(live_server.url)
    key = api_key(live_server, headers)
    client = openai.OpenAI(base_url=f"{live_server.url}/v1", api_key=key["key"], max_retries=0)
    model = client.models.list().data[0].id
    completion = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Hello!"}], temperature=0, max_tokens=8
    )
    assert completion.choices[0].message.content.strip()
    assert httpx.delete(f"{live_server.url}/api/auth/keys/{key['id']}", headers=headers).status_code == 204
    with pytest.raises(openai.AuthenticationError):
        client.models.list()


def test_top_k_stop_and_usage_are_honoured(client: openai.OpenAI) -> None:
    model = client.models.list().data[0].id
    messages = [{"role": "user", "content": "Tell me about the sea."}]
    greedy = client.chat.completions.create(model=model, messages=messages, temperature=0, max_tokens=40)
    text = greedy.choices[0].message.content
    # top_k=1 leaves one candidate: at temperature 1.5 the answer is still the greedy one
    top1 = client.chat.completions.create(
        model=model, messages=messages, temperature=1.5, max_tokens=40, extra_body={"top_k": 1}
    )
    assert top1.choices[0].message.content == text
    # stop: the answer ends before the first stop string, finish_reason "stop", streamed or not
    words = text.split()
    assert len(words) >= 4, text
    stop = " " + words[3]
    cut = text[: text.index(stop)]
    stopped = client.chat.completions.create(
        model=model, messages=messages, temperature=0, max_tokens=40, stop=[stop]
    )
    assert (stopped.choices[0].message.content, stopped.choices[0].finish_reason) == (cut, "stop")
    chunks = list(
        client.chat.completions.create(
            model=model,
            messages=messages,
            temperature=0,
            max_tokens=40,
            stop=stop,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == cut
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    last = chunks[-1]  # OpenAI's usage chunk: no choices
    assert last.choices == [] and last.usage.prompt_tokens > 0 and last.usage.completion_tokens >= 1
    assert all(c.usage is None for c in chunks[:-1])


def test_content_as_a_list_of_text_parts_is_read_as_the_same_text(client: openai.OpenAI) -> None:
    """OpenAI's array form of content, which the SDKs, LangChain and chat UIs send: text parts are the
    message's text joined by newlines, so the greedy answer is the one the string form gets."""
    model = client.models.list().data[0].id

    def answer(content: str | list[dict[str, str]], role: str = "system") -> str:
        messages = [{"role": role, "content": "Answer briefly."}, {"role": "user", "content": content}]
        completion = client.chat.completions.create(
            model=model, messages=messages, temperature=0, max_tokens=16
        )
        return completion.choices[0].message.content

    as_string = answer("What is 12 plus 7?\nPlease.")
    assert as_string.strip()
    parts = [{"type": "text", "text": "What is 12 plus 7?"}, {"type": "text", "text": "Please."}]
    assert answer(parts) == as_string
    assert answer("What is 12 plus 7?\nPlease.", role="developer") == as_string  # newer clients' system


def test_a_part_the_model_cannot_read_is_refused_by_name(live_server: LiveServer) -> None:
    headers = register_http(live_server.url)
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
    for content, field, words in [
        ([{"type": "text", "text": "What is this?"}, image], "messages.0.content.parts.1", "'image_url'"),
        ([], "messages.0.content.parts", "at least 1 item"),
        (7, "messages.0.content", "a string or a list of content parts"),
    ]:
        response = httpx.post(
            f"{live_server.url}/v1/chat/completions",
            json={"model": "slm", "messages": [{"role": "user", "content": content}]},
            headers=headers,
        )
        assert response.status_code == 422, response.text
        assert words in response.json()["error"]["fields"][field]


def test_what_real_clients_send_is_read_as_openai_reads_it(client: openai.OpenAI) -> None:
    """A max_tokens past the window (clients send 1024 or 4096 whatever the model) is kept within it;
    null for a sampling field is its default (openai-python sends temperature=None as null); a model is
    retrieved by its id, and an unknown id is a 404."""
    model = client.models.list().data[0].id
    assert client.models.retrieve(model).id == model
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-4")
    messages = [{"role": "user", "content": "Hello!"}]
    greedy = client.chat.completions.create(model=model, messages=messages, temperature=0, max_tokens=16)
    long = client.chat.completions.create(model=model, messages=messages, temperature=0, max_tokens=4096)
    assert long.choices[0].message.content.startswith(greedy.choices[0].message.content)
    assert long.usage.prompt_tokens + long.usage.completion_tokens <= 384
    nulls = client.chat.completions.with_raw_response.create(
        model=model,
        messages=messages,
        max_tokens=4,
        extra_body={"temperature": None, "top_p": None, "n": None},
    )
    assert nulls.status_code == 200 and nulls.parse().choices[0].message.content


def test_what_the_model_cannot_honour_is_refused_by_name(live_server: LiveServer) -> None:
    """Tools may be sent (with tool_choice auto, a text answer is an answer); a forced tool call, JSON
    output or log probabilities are refused in words, not ignored."""
    headers = register_http(live_server.url)
    tools = [{"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}]
    base = {"model": "slm", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}

    def post(**extra: object) -> httpx.Response:
        return httpx.post(f"{live_server.url}/v1/chat/completions", json={**base, **extra}, headers=headers)

    assert post(tools=tools).status_code == 200 and post(tools=tools, tool_choice="auto").status_code == 200
    for extra, field, words in [
        ({"tools": tools, "tool_choice": "required"}, "tool_choice", "cannot call tools"),
        ({"response_format": {"type": "json_object"}}, "response_format", "cannot promise json_object"),
        ({"logprobs": True, "top_logprobs": 2}, "logprobs", "log probabilities"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop.list", "at most 4 items"),
    ]:
        response = post(**extra)
        assert response.status_code == 422, response.text
        assert words in response.json()["error"]["fields"][field]


def test_a_long_chat_resent_whole_is_answered_from_its_newest_turns(live_server: LiveServer) -> None:
    """An OpenAI-compatible UI sends the whole history each time: 600 messages (~120 KB, past the 64 KiB
    other routes take) are answered, from the newest turns that fit; past SLM_OPENAI_MAX_BODY_BYTES, 413."""
    headers = register_http(live_server.url)
    history = []
    for i in range(300):
        history += [
            {"role": "user", "content": f"Tell me about the number {i}. " + "It is a number. " * 15},
            {"role": "assistant", "content": "It is a number. " * 5},
        ]
    newest = [{"role": "user", "content": "What is 12 plus 7?"}]

    def ask(messages: list[dict[str, str]]) -> httpx.Response:
        body = {"model": "slm", "messages": messages, "temperature": 0, "max_tokens": 8}
        return httpx.post(f"{live_server.url}/v1/chat/completions", json=body, headers=headers, timeout=60)

    whole = ask(history + newest)
    assert whole.status_code == 200, whole.text
    assert 0 < whole.json()["usage"]["prompt_tokens"] <= 384 - 8
    assert len(httpx.Request("POST", "/", json={"messages": history}).content) > 64 * 1024
    too_big = ask(history * 10 + newest)  # ~1.2 MB
    assert too_big.status_code == 413 and too_big.json()["error"]["code"] == "payload_too_large"
