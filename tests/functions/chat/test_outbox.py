"""Outbox: the scheduler thread's events reach the event loop in one wake-up per decode step."""

import asyncio

from functions.chat.events import Token
from functions.chat.outbox import Outbox


def test_the_events_of_one_step_share_one_wake_up_and_keep_their_order() -> None:
    async def scenario() -> tuple[list[list[Token]], int]:
        loop = asyncio.get_running_loop()
        outbox, wake_ups = Outbox(loop), []
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
