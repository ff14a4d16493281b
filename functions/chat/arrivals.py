"""Requests for an answer on their way to the scheduler, counted so that the scheduler can put them first.

A request that generates (POST /api/chat, POST /v1/chat/completions) is an arrival from the moment it
reaches this process until it has done what comes before its first token: its token check, its limits
and, on /api/chat, its rows. The route then calls `arrived()`; a request that fails before that stops
counting when it ends. While an arrival is pending and a slot is free, the scheduler holds its decode
steps back for a moment (functions/chat/scheduler.py, HOLD_SECONDS): on a small box the event loop that
brings the arrivals in and the decode pass share the same cores, and a burst of arrivals otherwise pays
for the running streams' steps before its first tokens. Prefill first is also what vLLM's scheduler does.
"""

import threading
from collections.abc import Callable
from contextvars import ContextVar

from starlette.types import ASGIApp, Receive, Scope, Send

GENERATING = ("/api/chat", "/v1/chat/completions")  # the POST routes that open a stream


class Arrivals:
    """A thread-safe count of the arrivals in flight (read by the scheduler's thread)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending = 0

    @property
    def pending(self) -> int:
        return self._pending

    def begin(self) -> Callable[[], None]:
        """Count one arrival; returns its end, which counts it off once however often it is called."""
        with self._lock:
            self._pending += 1
        ended = False

        def end() -> None:
            nonlocal ended
            with self._lock:
                if not ended:
                    ended = True
                    self._pending -= 1

        return end


ARRIVALS = Arrivals()  # this process's
_current: ContextVar[Callable[[], None] | None] = ContextVar("slm_arrival", default=None)


def arrived() -> None:
    """The request being handled has done what precedes its first token: it is no longer an arrival."""
    if (end := _current.get()) is not None:
        end()


class CountArrivals:
    """Counts each request to a generating route as an arrival until its route calls arrived() or it ends."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] != "POST"
            or scope["path"].rstrip("/") not in GENERATING
        ):
            return await self.app(scope, receive, send)
        end = ARRIVALS.begin()
        token = _current.set(end)
        try:
            await self.app(scope, receive, send)
        finally:
            end()
            _current.reset(token)
