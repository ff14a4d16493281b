"""Per event loop: the outbox that carries the scheduler thread's events to a loop, and the holder that
makes one of anything per loop (the outbox, the saver, the followers' reader)."""

import asyncio
import threading
import time
import weakref
from collections.abc import Callable
from typing import Generic, TypeVar

from functions.chat.events import Event, Token

T = TypeVar("T")
# Tokens alone go to a loop at most this often (a 50 Hz page still reads as flowing text): each delivery
# wakes the loop, whose work per wake-up (the events, their SSE writes) takes a core from the decode
# passes of two cores; every other event (a start, a first token, an end) goes at the step's end.
TOKEN_INTERVAL_SECONDS = 0.02


class Outbox:
    """Events from the scheduler thread to one event loop, delivered in one wake-up per scheduler step
    (Scheduler calls flush at the end of each): one hand-off per step instead of one per token and
    stream, and, while the steps bring only further tokens, one per `interval` seconds (their events
    wait, in order, for a later step's flush: a stream always ends with a step that flushes)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, interval: float = TOKEN_INTERVAL_SECONDS) -> None:
        self.loop, self.interval = loop, interval
        self._lock = threading.Lock()
        self._pending: list[tuple[asyncio.Queue[Event], Event]] = []
        self._urgent = False  # something other than a further token waits: deliver at this flush
        self._scheduled = False  # a delivery is on its way: what is put now rides along
        self._delivered_at = -float("inf")  # time.monotonic() of the last delivery's scheduling
        self._gone = False  # the loop has closed: nobody is listening, nothing is kept

    def put(self, queue: asyncio.Queue[Event], event: Event) -> None:
        with self._lock:
            if self._gone:
                return
            self._pending.append((queue, event))
            self._urgent = self._urgent or not isinstance(event, Token)

    def flush(self) -> None:
        now = time.monotonic()
        with self._lock:
            if not self._pending or self._scheduled:
                return
            if not self._urgent and now - self._delivered_at < self.interval:
                return  # only further tokens: they ride with a later step's flush
            self._scheduled, self._urgent, self._delivered_at = True, False, now
        try:
            self.loop.call_soon_threadsafe(self._deliver)
        except RuntimeError:  # the loop has closed (its server went away): nobody is listening
            with self._lock:
                self._pending.clear()
                self._scheduled, self._gone = False, True

    def _deliver(self) -> None:
        with self._lock:
            batch, self._pending, self._scheduled, self._urgent = self._pending, [], False, False
        for queue, event in batch:
            queue.put_nowait(event)


class PerLoop(Generic[T]):
    """One T for each event loop, made on first use (from the loop) and dropped with the loop."""

    def __init__(self, make: Callable[[asyncio.AbstractEventLoop], T]) -> None:
        self._make = make
        self._of: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, T] = weakref.WeakKeyDictionary()

    def get(self) -> T:
        loop = asyncio.get_running_loop()
        found = self._of.get(loop)
        if found is None:
            found = self._of[loop] = self._make(loop)
        return found
