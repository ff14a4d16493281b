"""Outbox: the scheduler thread's events reach the event loop in one wake-up per decode step, and
further tokens alone at most once per interval."""

import asyncio
from collections.abc import Callable

from functions.chat.events import Done, Event, Started, Token
from functions.chat.outbox import TOKEN_INTERVAL_SECONDS, Outbox


def test_the_events_of_one_step_share_one_wake_up_and_keep_their_order() -> None:
    async def scenario() -> tuple[list[list[Token]], int]:
        loop = asyncio.get_running_loop()
        outbox, wake_ups = Outbox(loop, interval=0), []  # every step's tokens go at once
        real = loop.call_soon_threadsafe

        def counted(callback, *args):  # type: ignore[no-untyped-def]
            wake_ups.append(callback)
            return real(callback, *args)

        loop.call_soon_threadsafe = counted  # type: ignore[method-assign]
        queues: list[asyncio.Queue] = [asyncio.Queue() for _ in range(8)]

        def decode_step(step: int) -> None:  # as the scheduler thread does: one token per stream, flush
            for queue in queues:
                outbox.put(queue, Token(step))
            outbox.flush()
            outbox.flush()  # nothing new: no second wake-up

        for step in range(3):
            await asyncio.to_thread(decode_step, step)
            await asyncio.sleep(0)
        received = [[queue.get_nowait() for _ in range(queue.qsize())] for queue in queues]
        return received, sum(callback == outbox._deliver for callback in wake_ups)  # to_thread's own aside

    received, wake_ups = asyncio.run(scenario())
    assert received == [[Token(0), Token(1), Token(2)]] * 8
    assert wake_ups == 3  # one per step, not 24


def test_a_closed_loop_takes_nothing_and_raises_nothing() -> None:
    loop = asyncio.new_event_loop()
    outbox = Outbox(loop)
    loop.close()
    queue: asyncio.Queue = asyncio.Queue()
    outbox.put(queue, Token(1))  # the scheduler thread must not fail because a server went away
    outbox.flush()
    outbox.put(queue, Token(2))
    outbox.flush()
    assert queue.empty() and not outbox._pending


def run_steps(interval: float, steps: list[list[Event]]) -> tuple[list[list[Event]], list[int]]:
    """Each step's events put into one queue and flushed from a thread, as the scheduler does; returns
    what the queue held after each step, and the wake-ups of the loop so far after each step."""

    async def scenario() -> tuple[list[list[Event]], list[int]]:
        loop = asyncio.get_running_loop()
        outbox, wake_ups = Outbox(loop, interval=interval), [0]
        real = loop.call_soon_threadsafe

        def counted(callback: Callable[..., object], *args: object) -> asyncio.Handle:
            wake_ups[0] += callback == outbox._deliver
            return real(callback, *args)

        loop.call_soon_threadsafe = counted  # type: ignore[method-assign]
        queue: asyncio.Queue[Event] = asyncio.Queue()
        seen: list[list[Event]] = []
        counts: list[int] = []
        for events in steps:

            def step(events: list[Event] = events) -> None:
                for event in events:
                    outbox.put(queue, event)
                outbox.flush()

            await asyncio.to_thread(step)
            await asyncio.sleep(0)
            seen.append([queue.get_nowait() for _ in range(queue.qsize())])
            counts.append(wake_ups[0])
        return seen, counts

    return asyncio.run(scenario())


def test_further_tokens_wait_for_the_interval_and_an_end_takes_them_all_at_once() -> None:
    steps: list[list[Event]] = [[Started(0.0), Token(0)], [Token(1)], [Token(2)], [Token(3), Done("length")]]
    seen, wake_ups = run_steps(3600, steps)  # an hour: every later step falls inside the interval
    assert seen == [[Started(0.0), Token(0)], [], [], [Token(1), Token(2), Token(3), Done("length")]]
    assert wake_ups == [1, 1, 1, 2]


def test_a_new_stream_start_goes_at_once_inside_the_interval() -> None:
    steps: list[list[Event]] = [[Token(0)], [Token(1)], [Token(2), Started(0.0), Token(9)]]
    seen, wake_ups = run_steps(3600, steps)
    assert seen == [[Token(0)], [], [Token(1), Token(2), Started(0.0), Token(9)]]
    assert wake_ups == [1, 1, 2]


def test_tokens_go_at_every_step_once_the_interval_has_passed() -> None:
    seen, wake_ups = run_steps(0, [[Token(0)], [Token(1)], [Token(2)]])
    assert seen == [[Token(0)], [Token(1)], [Token(2)]] and wake_ups == [1, 2, 3]


def test_the_served_interval_keeps_text_flowing() -> None:
    assert 0 < TOKEN_INTERVAL_SECONDS <= 0.05  # at least 20 deliveries a second while an answer grows
