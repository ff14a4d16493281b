"""Requests to the generating routes count as arrivals until their route says they are in, or they end."""

import asyncio

import pytest

from functions.chat.arrivals import ARRIVALS, Arrival, Arrivals, CountArrivals, arrived, queued


def _request(method: str, path: str) -> dict:
    return {"type": "http", "method": method, "path": path, "headers": []}


async def _call(app, scope: dict, chunks: tuple[bytes, ...] = (b"{}",)) -> None:
    """The request through CountArrivals; its body arrives in `chunks`."""
    left = list(chunks)

    async def receive() -> dict:
        if not left:
            return {"type": "http.disconnect"}
        return {"type": "http.request", "body": left.pop(0), "more_body": bool(left)}

    async def send(message: dict) -> None:
        pass

    await CountArrivals(app)(scope, receive, send)


def test_a_generating_request_counts_until_its_route_says_it_is_in():
    seen: list[int] = []

    async def route(scope, receive, send) -> None:
        await receive()  # the body, as FastAPI reads it
        seen.append(ARRIVALS.pending)
        arrived()
        seen.append(ARRIVALS.pending)
        arrived()  # once only
        seen.append(ARRIVALS.pending)

    before = ARRIVALS.pending
    for path in ("/api/chat", "/v1/chat/completions", "/api/chat/"):
        asyncio.run(_call(route, _request("POST", path)))
    assert seen == [before + 1, before, before] * 3
    assert ARRIVALS.pending == before


def test_other_requests_never_count_and_a_failing_one_stops_counting():
    seen: list[int] = []

    async def route(scope, receive, send) -> None:
        await receive()
        seen.append(ARRIVALS.pending)
        arrived()  # outside a generating request: nothing to count off
        seen.append(ARRIVALS.pending)

    before = ARRIVALS.pending
    for method, path in (("GET", "/api/chat/5/events"), ("GET", "/api/chat"), ("POST", "/api/conversations")):
        asyncio.run(_call(route, _request(method, path)))
    assert seen == [before] * 6

    async def failing(scope, receive, send) -> None:
        await receive()
        seen.append(ARRIVALS.pending)
        raise RuntimeError("the token check failed")

    with pytest.raises(RuntimeError):
        asyncio.run(_call(failing, _request("POST", "/api/chat")))
    assert seen[-1] == before + 1 and ARRIVALS.pending == before


def test_an_arrival_is_coming_until_its_prompt_is_queued_and_pending_until_it_is_in():
    """`coming` (not yet in the scheduler's queue: the scheduler gathers a burst's prompts for it) ends at
    queued() or end(), `pending` (decode steps wait for it) at end(); each counts off once."""
    arrivals = Arrivals()
    one, two = arrivals.begin(), arrivals.begin()
    assert (arrivals.pending, arrivals.coming) == (2, 2)
    one.queued()
    one.queued()
    assert (arrivals.pending, arrivals.coming) == (2, 1)
    one.end()
    assert (arrivals.pending, arrivals.coming) == (1, 1)
    two.end()  # failed before it queued its prompt: off both counts
    two.end()
    assert (arrivals.pending, arrivals.coming) == (0, 0)


def test_the_route_says_when_its_prompt_is_queued():
    seen: list[tuple[int, int]] = []

    async def route(scope, receive, send) -> None:
        await receive()
        seen.append((ARRIVALS.pending, ARRIVALS.coming))
        queued()  # ChatModel.open_stream, once the scheduler took the prompt
        seen.append((ARRIVALS.pending, ARRIVALS.coming))
        arrived()
        seen.append((ARRIVALS.pending, ARRIVALS.coming))

    pending, coming = ARRIVALS.pending, ARRIVALS.coming
    asyncio.run(_call(route, _request("POST", "/api/chat")))
    assert seen == [(pending + 1, coming + 1), (pending + 1, coming), (pending, coming)]


def test_a_request_counts_only_once_its_body_is_in():
    """A client still sending its body costs the loop nothing: it is not counted (one sending it slowly on
    purpose would otherwise hold every running stream's decode steps for as long as it likes)."""
    seen: list[int] = []

    async def route(scope, receive, send) -> None:
        seen.append(ARRIVALS.pending)
        await receive()  # the first part of the body
        seen.append(ARRIVALS.pending)
        await receive()  # the rest
        seen.append(ARRIVALS.pending)
        arrived()
        seen.append(ARRIVALS.pending)

    before = ARRIVALS.pending
    asyncio.run(_call(route, _request("POST", "/api/chat"), chunks=(b'{"message": ', b'"Hi"}')))
    assert seen == [before, before, before + 1, before] and ARRIVALS.pending == before


def test_an_arrival_that_ended_before_its_body_came_never_counts():
    arrivals = Arrivals()
    arrival = Arrival(arrivals)
    arrival.queued()
    arrival.end()  # e.g. the client went away
    arrival.start()
    assert (arrivals.pending, arrivals.coming) == (0, 0)
