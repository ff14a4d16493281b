"""Stops heard in the process that was asked. POST /api/conversations/{id}/stop sets the database flag
that every process reads with its saves (any instance can stop an answer, within one save interval); it
also announces the stop here, so an answer that this same process is generating (the local router and
the test servers run every function in one process) ends at its next decode step instead. Deleting a
conversation or an account announces a stop for each conversation it removed, for the same reason."""

from collections.abc import Callable

_listeners: list[Callable[[int], None]] = []


def listen(callback: Callable[[int], None]) -> None:
    """Call `callback(conversation_id)` for every stop announced in this process (on its event loop)."""
    _listeners.append(callback)


def announce(conversation_id: int) -> None:
    """A stop of this conversation's answer was stored: tell whoever listens in this process."""
    for callback in list(_listeners):
        callback(conversation_id)
