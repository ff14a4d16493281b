"""A small SSE reader over httpx for the live-server tests."""

import json
from collections.abc import Iterator
from typing import Any

import httpx

from tests.helpers import PASSWORD, unique_email


def register_http(base_url: str) -> dict[str, str]:
    response = httpx.post(
        f"{base_url}/api/auth/register", json={"email": unique_email(), "password": PASSWORD}
    )
    assert response.status_code == 201, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def records(response: httpx.Response) -> Iterator[tuple[str, dict[str, Any], int | None]]:
    """(event, data, SSE id or None) as they arrive."""
    name, data, event_id = "message", [], None
    for line in response.iter_lines():
        if line == "":
            if data:
                yield name, json.loads("\n".join(data)), event_id
            name, data, event_id = "message", [], None
        elif line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].lstrip())
        elif line.startswith("id:"):
            event_id = int(line[3:].strip())


def events(response: httpx.Response) -> Iterator[tuple[str, dict[str, Any]]]:
    """(event, data) pairs as they arrive."""
    for name, data, _ in records(response):
        yield name, data


def follow(base_url: str, headers: dict[str, str], conversation_id: int, **params: Any) -> list[tuple]:
    """The whole GET /api/chat/{id}/events stream as (event, data, id)."""
    url = f"{base_url}/api/chat/{conversation_id}/events"
    with httpx.stream("GET", url, headers=headers, params=params, timeout=120) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        return list(records(response))


def wait_until_finished(base_url: str, headers: dict[str, str], conversation_id: int) -> dict[str, Any]:
    """The conversation once its last answer has a finish_reason (the generation goes on without a client)."""
    import time

    for _ in range(600):
        saved = conversation(base_url, headers, conversation_id)
        last = saved["messages"][-1]
        if last["role"] == "assistant" and last["finish_reason"] is not None:
            return saved
        time.sleep(0.1)
    raise AssertionError(f"the answer never finished: {saved}")


def chat(base_url: str, headers: dict[str, str], **body: Any) -> list[tuple[str, dict[str, Any]]]:
    """One whole chat stream."""
    body.setdefault("conversation_id", None)
    with httpx.stream("POST", f"{base_url}/api/chat", json=body, headers=headers, timeout=120) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        return list(events(response))


def conversation(base_url: str, headers: dict[str, str], conversation_id: int) -> dict[str, Any]:
    response = httpx.get(f"{base_url}/api/conversations/{conversation_id}", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()
