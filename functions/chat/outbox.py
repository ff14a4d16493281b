"""Per event loop: the outbox that carries the scheduler thread's events to a loop, and the holder that
makes one of anything per loop (the outbox, the saver, the followers' reader)."""

import asyncio
import threading
import weakref
from collections.abc import Callable
from typing import Generic, TypeVar

from functions.chat.events import Event

T = TypeVar("T")


class Outbox:
    """Events from the scheduler thread to one event loop, delivered in one wake-up per scheduler step
    (Scheduler calls flush at the end of each): one hand-off per step instead of one per token and
    stream."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._lock = threading.Lock()
        self._pending: list[tuple[asyncio.Queue[Event], Event]] = []
        self._scheduled = False  # a delivery is on its way: what is put now rides along

    def put(self, queue: asyncio.Queue[Event], event: Event) -> None:
        with self._lock:
            self._pending.append((queue, event))

    def flush(self) -> None:
        with self._lock:
            if not self._pending or self._scheduled:
                return
            self._scheduled = True
        try:
            self.loop.call_soon_threadsafe(self._deliver)
        except RuntimeError:  # the loop has closed (its server went away): nobody is listening
            with self._lock:
                self._pending.clear()
                self._scheduled = False

    def _deliver(self) -> None:
        with self._lock:
            batch, self._pending, self._scheduled = self._pending, [], False
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
