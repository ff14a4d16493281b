"""Requests to the generating routes count as arrivals until their route says they are in, or they end."""

import asyncio

import pytest

from functions.chat.arrivals import ARRIVALS, CountArrivals, arrived


def _request(method: str, path: str) -> dict:
    return {"type": "http", "method": method, "path": path, "headers": []}


async def _call(app, scope: dict) -> None:
    async def receive() -> dict:
        return {"type": "http.request", "body": b""}

    async def send(message: dict) -> None:
        pass

    await CountArrivals(app)(scope, receive, send)


def test_a_generating_request_counts_until_its_route_says_it_is_in():
    seen: list[int] = []

    async def route(scope, receive, send) -> None:
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
        seen.append(ARRIVALS.pending)
        arrived()  # outside a generating request: nothing to count off
        seen.append(ARRIVALS.pending)

    before = ARRIVALS.pending
    for method, path in (("GET", "/api/chat/5/events"), ("GET", "/api/chat"), ("POST", "/api/conversations")):
        asyncio.run(_call(route, _request(method, path)))
    assert seen == [before] * 6

    async def failing(scope, receive, send) -> None:
        seen.append(ARRIVALS.pending)
        raise RuntimeError("the token check failed")

    with pytest.raises(RuntimeError):
        asyncio.run(_call(failing, _request("POST", "/api/chat")))
    assert seen[-1] == before + 1 and ARRIVALS.pending == before
