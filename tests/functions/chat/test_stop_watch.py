"""StopWatch: one stop-flag query for every stream of the process, on SQLite and PostgreSQL."""

import asyncio
import threading
from dataclasses import dataclass, field
from types import SimpleNamespace

from fastapi.testclient import TestClient

from functions.chat import generation
from functions.chat.generation import STOP_POLL_TOKENS, StopWatch
from tests.conftest import register
from tests.helpers import request_stop


@dataclass(eq=False)
class Stream:
    """What StopWatch reads of a Generation: its conversation, and the event that stops it."""

    turn: SimpleNamespace
    cancelled: threading.Event = field(default_factory=threading.Event)


def _streams(client: TestClient, count: int) -> list[Stream]:
    headers = register(client).headers
    ids = [
        client.post("/api/conversations", json={"title": "t"}, headers=headers).json()["id"]
        for _ in range(count)
    ]
    return [Stream(SimpleNamespace(conversation_id=c)) for c in ids]


def test_eight_streams_cost_one_query_per_poll_and_only_the_stopped_one_stops(
    client: TestClient, use_database: str, monkeypatch
) -> None:
    streams = _streams(client, 8)
    request_stop(use_database, streams[3].turn.conversation_id)
    queries: list[set[int]] = []
    real = generation.stops_requested

    async def counted(ids: set[int]) -> set[int]:
        queries.append(ids)
        return await real(ids)

    monkeypatch.setattr(generation, "stops_requested", counted)

    async def scenario() -> None:
        watch = StopWatch()
        for stream in streams:
            watch.watch(stream)
        for _ in range(8 * STOP_POLL_TOKENS - 1):  # one decode step short of a poll for 8 streams
            watch.tick()
        assert watch.task is None
        watch.tick()
        assert watch.task is not None
        await watch.task
        for _ in range(8 * STOP_POLL_TOKENS):
            watch.tick()
        await watch.task

    asyncio.run(scenario())
    every = {s.turn.conversation_id for s in streams}
    assert queries == [every, every]  # two polls of 8 streams: two queries, each for all of them
    assert [s.cancelled.is_set() for s in streams] == [i == 3 for i in range(8)]


def test_one_stream_is_read_every_few_tokens_and_an_unwatched_one_is_not(
    client: TestClient, use_database: str
) -> None:
    first, second = _streams(client, 2)
    request_stop(use_database, second.turn.conversation_id)

    async def scenario() -> None:
        watch = StopWatch()
        watch.watch(first)
        watch.watch(second)
        watch.unwatch(second)  # finished: no longer read
        for _ in range(STOP_POLL_TOKENS):
            watch.tick()
        assert watch.task is not None
        await watch.task

    asyncio.run(scenario())
    assert not first.cancelled.is_set() and not second.cancelled.is_set()
    request_stop(use_database, first.turn.conversation_id)

    async def again() -> None:
        watch = StopWatch()
        watch.watch(first)
        for _ in range(STOP_POLL_TOKENS):
            watch.tick()
        await watch.task

    asyncio.run(again())
    assert first.cancelled.is_set()
