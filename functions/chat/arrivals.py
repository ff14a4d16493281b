"""Requests for an answer on their way to the scheduler, counted so that the scheduler can put them first.

A request that generates (POST /api/chat, POST /v1/chat/completions) is an arrival from the moment its
body has reached this process until it has done what comes before its first token: its token check,
its limits and, on /api/chat, its rows. The route then calls `arrived()`; a request that fails before
that stops counting when it ends. A client still sending its body is not counted: it costs the event
loop nothing meanwhile, and one that sent it slowly on purpose would otherwise hold every stream's steps.
While an arrival is pending and a slot is free, the scheduler holds its decode steps back for a moment
(functions/chat/scheduler.py, HOLD_SECONDS): on a small box the event loop that brings the arrivals in
and the decode pass share the same cores, and a burst of arrivals otherwise pays for the running
streams' steps before its first tokens. Prefill first is also what vLLM's scheduler does.
"""

import threading
from contextvars import ContextVar

from starlette.types import ASGIApp, Message, Receive, Scope, Send

GENERATING = ("/api/chat", "/v1/chat/completions")  # the POST routes that open a stream


class Arrival:
    """One request's passage: start() once its body is in (counted from then on), queued() once its
    prompt is in the scheduler's queue, end() once what precedes its first token is done (or it failed).
    Each counts once however often it is called; nothing counts before start() or after end()."""

    def __init__(self, arrivals: "Arrivals") -> None:
        self._arrivals = arrivals
        self._started = self._queued = self._ended = False

    def start(self) -> None:
        with self._arrivals.lock:
            if not self._started and not self._ended:
                self._started = True
                self._arrivals.pending += 1
                self._arrivals.coming += 1

    def queued(self) -> None:
        with self._arrivals.lock:
            self._off_queue()

    def end(self) -> None:
        with self._arrivals.lock:
            self._off_queue()
            if self._started and not self._ended:
                self._arrivals.pending -= 1
            self._ended = True

    def _off_queue(self) -> None:  # with the lock held
        if self._started and not self._queued and not self._ended:
            self._queued = True
            self._arrivals.coming -= 1


class Arrivals:
    """Thread-safe counts of the arrivals in flight (read by the scheduler's thread): `pending`, those
    that have not yet done what precedes their first token, and `coming`, those of them whose prompt is
    not yet in the scheduler's queue."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pending = 0
        self.coming = 0

    def begin(self) -> Arrival:
        """Count one arrival from now."""
        arrival = Arrival(self)
        arrival.start()
        return arrival


ARRIVALS = Arrivals()  # this process's
_current: ContextVar[Arrival | None] = ContextVar("slm_arrival", default=None)


def queued() -> None:
    """The request being handled has put its prompt in the scheduler's queue (ChatModel.open_stream)."""
    if (arrival := _current.get()) is not None:
        arrival.queued()


def arrived() -> None:
    """The request being handled has done what precedes its first token: it is no longer an arrival."""
    if (arrival := _current.get()) is not None:
        arrival.end()


class CountArrivals:
    """Counts each request to a generating route as an arrival from the end of its body until its route
    calls arrived() or it ends."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] != "POST"
            or scope["path"].rstrip("/") not in GENERATING
        ):
            return await self.app(scope, receive, send)
        arrival = Arrival(ARRIVALS)
        token = _current.set(arrival)

        async def receive_then_count() -> Message:
            message = await receive()
            if message["type"] == "http.request" and not message.get("more_body", False):
                arrival.start()  # the body is in
            return message

        try:
            await self.app(scope, receive_then_count, send)
        finally:
            arrival.end()
            _current.reset(token)
