"""Load: 20 concurrent chat streams plus closed-loop conversation-API traffic against a live server on
loopback, for SLM_LOAD_SECONDS (default 60) per database backend. Every loop stops by itself at the deadline.

Asserted: no error of any kind, and every answer that was streamed is stored, word for word. Recorded (never
asserted): the request rates held and the p95 latencies, in artifacts/reliability/load-<backend>.json.
"""

import asyncio
import json
import os
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from tests.helpers import PASSWORD, LiveServer, unique_email
from tests.reliability.conftest import backend, p95, record

pytestmark = pytest.mark.slow
SECONDS = float(os.environ.get("SLM_LOAD_SECONDS", "60"))
CHAT_STREAMS = 20
API_WORKERS = 4  # closed loops: each sends its next request when the last one is answered
CHAT = {"max_new_tokens": 16, "temperature": 0.8}


@dataclass
class Tally:
    errors: list[str] = field(default_factory=list)
    first_token: list[float] = field(default_factory=list)  # seconds from request to first token
    stream: list[float] = field(default_factory=list)  # seconds from request to `done`
    api: list[float] = field(default_factory=list)  # seconds per conversation-API request
    tokens: int = 0
    answers: dict[int, list[tuple[int, str, str]]] = field(default_factory=dict)  # conversation -> turns
    owners: dict[int, dict[str, str]] = field(default_factory=dict)  # conversation -> its owner's headers


async def account(client: httpx.AsyncClient) -> dict[str, str]:
    response = await client.post("/api/auth/register", json={"email": unique_email(), "password": PASSWORD})
    response.raise_for_status()
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


async def chat_loop(client: httpx.AsyncClient, deadline: float, tally: Tally, n: int) -> None:
    headers, conversation_id, turn = await account(client), None, 0
    while time.monotonic() < deadline:
        turn += 1
        message = f"stream {n} turn {turn}: tell me something"
        body = {"conversation_id": conversation_id, "message": message, **CHAT}
        started, first, parts, event, done = time.monotonic(), None, [], "", None
        try:
            async with client.stream("POST", "/api/chat", json=body, headers=headers) as response:
                if response.status_code != 200:
                    tally.errors.append(f"chat {response.status_code}: {(await response.aread())[:200]!r}")
                    continue
                async for line in response.aiter_lines():
                    if line.startswith("event:"):
                        event = line[6:].strip()
                    elif line.startswith("data:"):
                        data = json.loads(line[5:])
                        if event == "meta":
                            conversation_id = data["conversation_id"]
                        elif event == "token":
                            first = first or time.monotonic()
                            parts.append(data["text"])
                        elif event == "done":
                            done = data
                        elif event == "error":
                            tally.errors.append(f"chat error event: {data}")
        except httpx.HTTPError as exc:
            tally.errors.append(f"chat {type(exc).__name__}: {exc}")
            continue
        if done is None:
            continue
        now = time.monotonic()
        tally.stream.append(now - started)
        tally.first_token.append((first or now) - started)
        tally.tokens += done["tokens"]
        assert conversation_id is not None
        tally.owners[conversation_id] = headers
        answer = (done["assistant_message_id"], message, "".join(parts))
        tally.answers.setdefault(conversation_id, []).append(answer)


async def api_loop(client: httpx.AsyncClient, deadline: float, tally: Tally) -> None:
    headers, mine = await account(client), []

    async def call(method: str, path: str, ok: int = 200, **kwargs: Any) -> httpx.Response | None:
        started = time.monotonic()
        try:
            response = await client.request(method, path, headers=headers, **kwargs)
        except httpx.HTTPError as exc:
            tally.errors.append(f"{method} {path} {type(exc).__name__}: {exc}")
            return None
        tally.api.append(time.monotonic() - started)
        if response.status_code != ok:
            tally.errors.append(f"{method} {path} {response.status_code}: {response.text[:200]}")
            return None
        return response

    step = 0
    while time.monotonic() < deadline:
        step += 1
        if not mine or step % 5 == 0:
            if created := await call("POST", "/api/conversations", 201, json={"title": f"load {step}"}):
                mine.append(created.json()["id"])
        elif step % 5 == 1:
            await call("GET", "/api/conversations", params={"limit": 20})
        elif step % 5 == 2:
            await call("GET", f"/api/conversations/{mine[-1]}")
        elif step % 5 == 3:
            await call("PATCH", f"/api/conversations/{mine[-1]}", json={"title": f"renamed {step}"})
        elif len(mine) > 3:
            await call("DELETE", f"/api/conversations/{mine.pop(0)}", 204)
        else:
            await call("GET", f"/api/conversations/{mine[-1]}/export")


async def verify_persisted(client: httpx.AsyncClient, tally: Tally) -> int:
    """Every streamed answer is stored word for word, right after the user message that asked for it."""
    checked = 0
    for conversation_id, turns in tally.answers.items():
        path = f"/api/conversations/{conversation_id}"
        messages = (await client.get(path, headers=tally.owners[conversation_id])).json()["messages"]
        assert [m["id"] for m in messages] == sorted(m["id"] for m in messages)
        position = {m["id"]: i for i, m in enumerate(messages)}
        for assistant_id, message, answer in turns:
            i = position[assistant_id]
            assert (messages[i]["role"], messages[i]["content"]) == ("assistant", answer)
            assert (messages[i - 1]["role"], messages[i - 1]["content"]) == ("user", message)
            checked += 1
    return checked


async def run_load(url: str) -> tuple[Tally, float, int]:
    tally = Tally()
    limits = httpx.Limits(max_connections=CHAT_STREAMS + API_WORKERS + 4)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
        deadline = time.monotonic() + SECONDS
        started = time.monotonic()
        loops = [chat_loop(client, deadline, tally, n) for n in range(CHAT_STREAMS)]
        loops += [api_loop(client, deadline, tally) for _ in range(API_WORKERS)]
        await asyncio.wait_for(
            asyncio.gather(*loops), timeout=SECONDS + 300
        )  # bounded even if a stream hangs
        elapsed = time.monotonic() - started
        return tally, elapsed, await verify_persisted(client, tally)


def test_chat_streams_and_api_traffic_together_without_errors_or_loss(live_server: LiveServer) -> None:
    tally, elapsed, persisted = asyncio.run(run_load(live_server.url))
    answers = sum(len(turns) for turns in tally.answers.values())
    figures = {
        "seconds": round(elapsed, 1),
        "chat_streams": CHAT_STREAMS,
        "api_workers": API_WORKERS,
        "answers": answers,
        "answers_persisted": persisted,
        "answers_per_second": round(answers / elapsed, 2),
        "tokens_per_second": round(tally.tokens / elapsed, 1),
        "p95_first_token_s": round(p95(tally.first_token), 3),
        "p95_stream_s": round(p95(tally.stream), 3),
        "api_requests": len(tally.api),
        "api_requests_per_second": round(len(tally.api) / elapsed, 1),
        "p95_api_ms": round(1000 * p95(tally.api), 1),
        "errors": len(tally.errors),
    }
    record(f"load-{backend(live_server.database_url)}", figures)
    assert tally.errors == []
    assert answers >= CHAT_STREAMS and persisted == answers
    assert len(tally.api) > 0
