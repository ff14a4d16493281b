"""A small SSE reader over httpx for the live-server tests."""

import json
from collections.abc import Iterator
from typing import Any

import httpx

from tests.conftest import PASSWORD, unique_email


def register_http(base_url: str) -> dict[str, str]:
    response = httpx.post(
        f"{base_url}/api/auth/register", json={"email": unique_email(), "password": PASSWORD}
    )
    assert response.status_code == 201, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def events(response: httpx.Response) -> Iterator[tuple[str, dict[str, Any]]]:
    """(event, data) pairs as they arrive."""
    name, data = "message", []
    for line in response.iter_lines():
        if line == "":
            if data:
                yield name, json.loads("\n".join(data))
            name, data = "message", []
        elif line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].lstrip())


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
