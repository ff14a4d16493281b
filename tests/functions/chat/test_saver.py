"""Saver: the partial answers of every stream of an event loop in one transaction, on SQLite and
PostgreSQL; a finished answer is never overwritten, a stop or a deleted conversation stops its stream."""

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from types import SimpleNamespace

from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

from functions.chat import generation, rows
from functions.chat.generation import HEARTBEAT_SECONDS, Answer, Generation, Saver, save_answer, save_partial
from functions.chat.rows import TurnIds
from shared import ratelimit, stops
from shared.migrate import sync_url
from shared.models import Message, utcnow
from tests.helpers import PASSWORD, Account, register, request_stop


@dataclass(eq=False)
class Stream:
    """What the Saver reads of a Generation: its turn, its answer so far, the event that stops it."""

    turn: SimpleNamespace
    answer: Answer = field(default_factory=Answer)
    cancelled: threading.Event = field(default_factory=threading.Event)
    saved = Generation.saved  # the answer as a save writes it


def turn(conversation_id: int, answer_id: int, user_id: int, reserved: ratelimit.Taken) -> SimpleNamespace:
    ids = TurnIds(
        conversation_id=conversation_id, user_message_id=0, assistant_message_id=answer_id, asked_at=utcnow()
    )
    return SimpleNamespace(ids=ids, user_id=user_id, reserved=reserved)


def _reserve(user_id: int, tokens: int) -> ratelimit.Taken:
    """Reserve an answer's tokens from the user's day, as POST /api/chat does before it starts."""
    from sqlalchemy.ext.asyncio import AsyncSession

    from shared.database import build_engine
    from shared.settings import get_settings

    async def reserve() -> ratelimit.Taken:
        engine = build_engine(get_settings().database_url)  # its own: the app's engine lives on its loop
        try:
            async with AsyncSession(engine) as session:
                return await ratelimit.admit_chat(session, user_id, get_settings(), tokens)
        finally:
            await engine.dispose()

    return asyncio.run(reserve())


def _streams(
    client: TestClient, database_url: str, count: int, reserve: int = 10, account: Account | None = None
) -> list[Stream]:
    """`count` conversations of one user (`account`, or a new one), each with an empty assistant message in
    progress and `reserve` tokens reserved for it."""
    account = account or register(client)
    headers = account.headers
    ids = [
        client.post("/api/conversations", json={"title": "t"}, headers=headers).json()["id"]
        for _ in range(count)
    ]
    engine = create_engine(sync_url(database_url))
    with Session(engine) as session:
        messages = [Message(conversation_id=c, role="assistant", content="", token_count=0) for c in ids]
        session.add_all(messages)
        session.commit()
        streams = [
            Stream(turn(c, m.id, account.id, _reserve(account.id, reserve)))
            for c, m in zip(ids, messages, strict=True)
        ]
    engine.dispose()
    return streams


def _grow(stream: Stream, token: int) -> None:
    stream.answer.ids.append(token)
    stream.answer.parts.append(f" t{token}")


def _saved(database_url: str, message_id: int) -> tuple[str, int, str | None, str | None]:
    engine = create_engine(sync_url(database_url))
    with engine.connect() as connection:
        row = connection.execute(
            text("SELECT content, token_count, token_ids, finish_reason FROM messages WHERE id = :m"),
            {"m": message_id},
        ).one()
    engine.dispose()
    return row[0], row[1], row[2], row[3]


def test_eight_growing_answers_are_saved_together_in_one_transaction_per_interval(
    client: TestClient, use_database: str, monkeypatch
) -> None:
    streams = _streams(client, use_database, 8)
    batches: list[list[int]] = []
    written: asyncio.Queue[None] = asyncio.Queue()
    real = generation.save_partial

    async def counted(generations: list) -> set[int]:
        batches.append([g.turn.ids.assistant_message_id for g in generations])
        stop = await real(generations)
        written.put_nowait(None)
        return stop

    monkeypatch.setattr(generation, "save_partial", counted)
    monkeypatch.setattr(generation, "SAVE_INTERVAL_SECONDS", 0.01)
    monkeypatch.setattr(generation, "HEARTBEAT_SECONDS", 3600.0)  # only growth makes a write here

    async def scenario() -> None:
        saves = Saver()
        for stream in streams:
            saves.watch(stream)
        for step in range(3):  # three decode steps, each saved before the next
            for stream in streams:
                _grow(stream, step)
            await written.get()
        for stream in streams:
            await saves.unwatch(stream)
        assert saves.task is not None
        await saves.task  # nothing watched: the loop ends

    asyncio.run(scenario())
    every = [s.turn.ids.assistant_message_id for s in streams]
    assert batches == [every, every, every]  # one write per step for all eight, nothing in between
    for stream in streams:
        assert _saved(use_database, stream.turn.ids.assistant_message_id) == (" t0 t1 t2", 3, "0 1 2", None)
        assert not stream.cancelled.is_set()


def test_an_answer_is_written_again_only_when_it_grew_or_its_heartbeat_is_due() -> None:
    waiting, growing = Stream(SimpleNamespace()), Stream(SimpleNamespace())
    saves = Saver()
    saves.watched = {waiting: None, growing: None}
    assert saves.due(100.0) == [waiting, growing]  # never saved: both, also the one still queued
    for stream in (waiting, growing):
        stream.answer.saved_tokens, stream.answer.saved_at = 0, 100.0
    assert saves.due(100.1) == []
    _grow(growing, 5)
    assert saves.due(100.1) == [growing]
    assert saves.due(100.0 + HEARTBEAT_SECONDS) == [waiting, growing]  # the queued one's heartbeat


def test_a_stop_or_a_deleted_conversation_stops_the_stream_and_a_finished_answer_stays(
    client: TestClient, use_database: str
) -> None:
    going, stopped, deleted, finished = _streams(client, use_database, 4)
    request_stop(use_database, stopped.turn.ids.conversation_id)
    engine = create_engine(sync_url(use_database))
    with engine.begin() as connection:
        for table, column in (("messages", "conversation_id"), ("conversations", "id")):  # as the API deletes
            connection.execute(
                text(f"DELETE FROM {table} WHERE {column} = :c"), {"c": deleted.turn.ids.conversation_id}
            )
    engine.dispose()
    for stream in (going, stopped, deleted, finished):
        _grow(stream, 1)
    _grow(finished, 2)

    async def scenario() -> set[int]:
        assert await save_answer(finished, "eos")  # the final save, before a late partial one
        late = Stream(finished.turn)
        _grow(late, 1)
        return await save_partial([going, stopped, deleted, late])

    stop = asyncio.run(scenario())
    assert stop == {stopped.turn.ids.assistant_message_id, deleted.turn.ids.assistant_message_id}
    # the deleted answer's final save finds nothing to write, and says so (its stream ends with not_found)
    assert asyncio.run(save_answer(deleted, "stopped")) is False
    assert _saved(use_database, going.turn.ids.assistant_message_id) == (" t1", 1, "1", None)
    assert _saved(use_database, finished.turn.ids.assistant_message_id) == (" t1 t2", 2, "1 2", "eos")


def test_the_saver_sets_the_stop_it_reads(client: TestClient, use_database: str, monkeypatch) -> None:
    (stream,) = _streams(client, use_database, 1)
    request_stop(use_database, stream.turn.ids.conversation_id)
    monkeypatch.setattr(generation, "SAVE_INTERVAL_SECONDS", 0.01)
    real = generation.save_partial

    async def scenario() -> None:
        written = asyncio.Event()

        async def signalled(generations: list) -> set[int]:
            stop = await real(generations)
            written.set()  # the saver acts on what it read before this task runs again
            return stop

        monkeypatch.setattr(generation, "save_partial", signalled)
        saves = Saver()
        saves.watch(stream)  # queued: no token yet, saved as its heartbeat
        await written.wait()
        await saves.unwatch(stream)

    asyncio.run(scenario())
    assert stream.cancelled.is_set()


def _tokens_and_stop(database_url: str, conversation_id: int) -> tuple[int | None, object]:
    """(the tokens counted today for the conversation's user, its stop flag)."""
    engine = create_engine(sync_url(database_url))
    with engine.connect() as connection:
        user_id, stop = connection.execute(
            text("SELECT user_id, stop_requested_at FROM conversations WHERE id = :c"), {"c": conversation_id}
        ).one()
        counted = connection.execute(
            text("SELECT count FROM rate_limit_buckets WHERE key = :k"), {"k": f"tokens:user:{user_id}"}
        ).scalar()
    engine.dispose()
    return counted, stop


def test_a_stop_sent_as_the_turn_is_written_is_kept_and_ends_only_the_answers_asked_before_it(
    client: TestClient, use_database: str
) -> None:
    """Send, then Stop a few milliseconds later: the turn's rows, written after the stop, used to clear the
    flag, and the answer ran to its end. A stop ends the answers asked for before it, never a later one."""
    (asked,) = _streams(client, use_database, 1)
    conversation_id, user_id = asked.turn.ids.conversation_id, asked.turn.user_id
    request_stop(use_database, conversation_id)
    engine = create_engine(sync_url(use_database))
    with engine.begin() as connection:  # the turn points its conversation at its answer, after the stop
        values = {"of": conversation_id, "owner": user_id, "answer": asked.turn.ids.assistant_message_id}
        connection.execute(rows._POINT_AT_ANSWER, {**values, "now": utcnow()})
    with Session(engine) as session:  # the next message, asked for after the stop
        message = Message(conversation_id=conversation_id, role="assistant", content="", token_count=0)
        session.add(message)
        session.commit()
        later = Stream(turn(conversation_id, message.id, user_id, asked.turn.reserved))
    engine.dispose()
    _grow(asked, 1)
    _grow(later, 1)
    assert asyncio.run(save_partial([asked, later])) == {asked.turn.ids.assistant_message_id}


def test_the_final_save_writes_the_answer_and_settles_the_tokens_in_one_go(
    client: TestClient, use_database: str
) -> None:
    """10 tokens were reserved, 3 generated: the day counts 3. The stop stays: it ends only the answers
    asked for before it."""
    (stream,) = _streams(client, use_database, 1, reserve=10)
    conversation_id = stream.turn.ids.conversation_id
    assert _tokens_and_stop(use_database, conversation_id)[0] == 10
    request_stop(use_database, conversation_id)
    for token in (1, 2, 3):
        _grow(stream, token)
    asyncio.run(save_answer(stream, "stopped"))
    assert _saved(use_database, stream.turn.ids.assistant_message_id) == (" t1 t2 t3", 3, "1 2 3", "stopped")
    counted, stop = _tokens_and_stop(use_database, conversation_id)
    assert counted == 3 and stop is not None


def test_a_late_save_keyed_to_another_conversation_writes_nothing(
    client: TestClient, use_database: str
) -> None:
    """Every save names the answer's conversation (and the final one its owner) in its key: a generation
    whose ids were to land in another user's rows (SQLite used to reuse a deleted conversation's ids)
    changes nothing there, and settles only its own reservation."""
    (mine,) = _streams(client, use_database, 1)
    (theirs,) = _streams(client, use_database, 1)
    _grow(theirs, 4)
    asyncio.run(save_answer(theirs, "eos"))
    # its own conversation, another answer's id
    stray = Stream(
        turn(
            mine.turn.ids.conversation_id,
            theirs.turn.ids.assistant_message_id,
            mine.turn.user_id,
            mine.turn.reserved,
        )
    )
    _grow(stray, 9)
    asyncio.run(save_partial([stray]))
    asyncio.run(save_answer(stray, "length"))
    assert _saved(use_database, theirs.turn.ids.assistant_message_id) == (" t4", 1, "4", "eos")
    wrong_owner = Stream(SimpleNamespace(**{**vars(mine.turn), "user_id": theirs.turn.user_id}))
    _grow(wrong_owner, 5)
    asyncio.run(save_answer(wrong_owner, "eos"))
    assert _tokens_and_stop(use_database, theirs.turn.ids.conversation_id)[0] == 1  # theirs: untouched


def test_a_final_save_whose_settlement_fails_still_saves_the_answer(
    client: TestClient, use_database: str
) -> None:
    """The limit settles best-effort: a counter that cannot be written (a trigger refuses it here) leaves
    the answer saved and the whole reservation counted."""
    (stream,) = _streams(client, use_database, 1, reserve=10)
    _grow(stream, 7)
    with refusing_updates(use_database, "rate_limit_buckets"):
        asyncio.run(save_answer(stream, "eos"))
    assert _saved(use_database, stream.turn.ids.assistant_message_id) == (" t7", 1, "7", "eos")
    assert _tokens_and_stop(use_database, stream.turn.ids.conversation_id)[0] == 10


def test_a_final_save_that_fails_is_tried_again_until_the_whole_answer_is_saved(
    client: TestClient, use_database: str, monkeypatch
) -> None:
    """The database refuses the final save (a trigger refuses every update of an answer here, as an outage
    would): the stream ends with save_failed, the save is tried again in the background, a reply to the
    answer meanwhile is refused as to an answer being written (its prompt would hold less than the whole
    answer), and once the database takes the save the whole answer is saved with its finish reason and the
    day's tokens settled, not left at its last partial save."""
    from functions.chat.app import being_written, not_saving_later

    (stream,) = _streams(client, use_database, 1, reserve=10)
    answer_id = stream.turn.ids.assistant_message_id
    for token in (7, 8, 9):
        _grow(stream, token)
    row = SimpleNamespace(id=answer_id, finish_reason=None, updated_at=utcnow() - timedelta(minutes=5))
    refusal, seen = contextlib.ExitStack(), []

    def pauses() -> Iterator[float]:
        """The retries' pauses: three tries are refused, then (between two tries: no transaction open)
        the database takes updates again."""
        for _ in range(3):
            yield 0.01
        seen.extend([_saved(use_database, answer_id), being_written(row), not_saving_later([row])])
        row.finish_reason = "error"  # another process's stale rule: the 409 holds here all the same
        seen.append(being_written(row))
        row.finish_reason = None
        refusal.close()
        while True:
            yield 0.01

    monkeypatch.setattr(generation, "FINAL_SAVE_RETRIES_SECONDS", pauses())
    refusal.enter_context(refusing_updates(use_database, "messages"))

    async def scenario() -> bytes:
        event = await Generation._end(stream, "eos", None, 1.0)  # type: ignore[arg-type]
        generation._ended(answer_id)  # as Generation._run does next
        retrying = [task for task in generation._running if task.get_loop() is asyncio.get_running_loop()]
        await asyncio.wait_for(asyncio.gather(*retrying), timeout=60)
        return event

    try:
        event = asyncio.run(scenario())
    finally:
        refusal.close()
    assert b"event: error" in event and b"save_failed" in event
    # nothing saved yet; a reply meanwhile is a 409, and this process's stale rule leaves the answer be
    assert seen == [("", 0, None, None), True, [], True]
    assert _saved(use_database, answer_id) == (" t7 t8 t9", 3, "7 8 9", "eos")
    assert _tokens_and_stop(use_database, stream.turn.ids.conversation_id)[0] == 3
    assert not generation.saving_later(answer_id) and not being_written(row)  # ended here, saved


def test_a_final_save_tried_again_after_one_that_committed_gives_nothing_back_twice(
    client: TestClient, use_database: str
) -> None:
    """A try that failed may have committed all the same (the connection lost as the commit went out):
    the next try finds the answer finished and writes nothing, so the unused tokens are given back once."""
    (stream,) = _streams(client, use_database, 1, reserve=10)
    _grow(stream, 7)
    asyncio.run(save_answer(stream, "eos"))
    asyncio.run(save_answer(stream, "length", again=True))
    assert _saved(use_database, stream.turn.ids.assistant_message_id) == (" t7", 1, "7", "eos")
    assert _tokens_and_stop(use_database, stream.turn.ids.conversation_id)[0] == 1


def test_a_final_save_tried_again_writes_the_whole_answer_over_a_stale_rules_failure(
    client: TestClient, use_database: str
) -> None:
    """While the final save was tried again, another process's stale rule ended the answer as failed, over
    its last partial save: the try that lands writes the whole answer and its finish reason over that,
    and settles the day's tokens."""
    (stream,) = _streams(client, use_database, 1, reserve=10)
    answer_id = stream.turn.ids.assistant_message_id
    _grow(stream, 7)
    asyncio.run(save_partial([stream]))
    engine = create_engine(sync_url(use_database))
    with engine.begin() as connection:  # what shared.crud.finalize_stale_answers writes
        connection.execute(
            text("UPDATE messages SET finish_reason = 'error' WHERE id = :m"), {"m": answer_id}
        )
    engine.dispose()
    assert _saved(use_database, answer_id) == (" t7", 1, "7", "error")
    _grow(stream, 8)
    asyncio.run(save_answer(stream, "eos", again=True))
    assert _saved(use_database, answer_id) == (" t7 t8", 2, "7 8", "eos")
    assert _tokens_and_stop(use_database, stream.turn.ids.conversation_id)[0] == 2


@contextlib.contextmanager
def refusing_updates(database_url: str, table: str) -> Iterator[None]:
    """While inside, the database refuses every update of `table` (a trigger raises)."""
    engine = create_engine(sync_url(database_url))
    sqlite = database_url.startswith("sqlite")
    with engine.begin() as connection:
        if sqlite:
            connection.execute(
                text(
                    f"CREATE TRIGGER refuse BEFORE UPDATE ON {table} BEGIN SELECT RAISE(ABORT, 'refused'); END"
                )
            )
        else:
            connection.execute(
                text(
                    "CREATE FUNCTION refuse() RETURNS trigger AS "
                    "$$ BEGIN RAISE EXCEPTION 'refused'; END $$ LANGUAGE plpgsql"
                )
            )
            connection.execute(
                text(f"CREATE TRIGGER refuse BEFORE UPDATE ON {table} FOR EACH ROW EXECUTE FUNCTION refuse()")
            )
    try:
        yield
    finally:
        with engine.begin() as connection:
            if sqlite:
                connection.execute(text("DROP TRIGGER refuse"))
            else:
                connection.execute(text(f"DROP TRIGGER refuse ON {table}"))
                connection.execute(text("DROP FUNCTION refuse()"))
        engine.dispose()


class _Answering:
    """What the in-process stop reads of a generation: its conversation and its stop switch."""

    def __init__(self, conversation_id: int) -> None:
        self.turn = SimpleNamespace(ids=SimpleNamespace(conversation_id=conversation_id))
        self.cancelled = threading.Event()


def test_a_stop_stored_by_this_process_ends_its_answers_of_that_conversation_at_once() -> None:
    """POST /api/conversations/{id}/stop announces the stop in its own process (shared/stops.py): the
    answers this event loop generates for that conversation stop at their next step, without waiting for
    the next save to read the flag; other conversations' answers go on."""

    async def main() -> tuple[bool, bool]:
        saver = generation._savers.get()
        mine, other = _Answering(7), _Answering(8)
        saver.watched.update({mine: None, other: None})
        try:
            stops.announce(7)
            return mine.cancelled.is_set(), other.cancelled.is_set()
        finally:
            saver.watched.clear()

    assert asyncio.run(main()) == (True, False)


def test_deleting_a_conversation_or_an_account_stops_its_answers_in_this_process_at_once(
    client: TestClient, use_database: str, monkeypatch
) -> None:
    """DELETE /api/conversations/{id} and DELETE /api/auth/me announce a stop for each conversation they
    removed (shared/stops.py), as POST .../stop does: an answer this process generates for one of them
    ends at its next decode step, not a save interval later. Another user's conversations are not named."""
    heard: list[int] = []
    monkeypatch.setattr(stops, "_listeners", [heard.append])
    carol, dave = register(client), register(client)
    first, second = (s.turn.ids.conversation_id for s in _streams(client, use_database, 2, account=carol))
    (daves,) = _streams(client, use_database, 1, account=dave)
    assert client.delete(f"/api/conversations/{first}", headers=carol.headers).status_code == 204
    assert heard == [first]
    assert (
        client.request(
            "DELETE", "/api/auth/me", json={"password": PASSWORD}, headers=carol.headers
        ).status_code
        == 204
    )
    assert heard == [first, second]
    assert daves.turn.ids.conversation_id not in heard


def test_the_final_save_of_an_answer_whose_account_was_deleted_writes_nothing(
    client: TestClient, use_database: str
) -> None:
    """The account goes while its answer generates; the answer's final save comes after: no message row
    and no counter of the user reappears (the day's token counter used to be written back)."""
    carol = register(client)
    (stream,) = _streams(client, use_database, 1, reserve=10, account=carol)
    _grow(stream, 3)
    asyncio.run(save_partial([stream]))
    assert _tokens_and_stop(use_database, stream.turn.ids.conversation_id)[0] == 10
    assert (
        client.request(
            "DELETE", "/api/auth/me", json={"password": PASSWORD}, headers=carol.headers
        ).status_code
        == 204
    )
    _grow(stream, 4)
    asyncio.run(save_answer(stream, "stopped"))
    engine = create_engine(sync_url(use_database))
    with engine.connect() as connection:
        messages = connection.execute(
            text("SELECT COUNT(*) FROM messages WHERE id = :m"), {"m": stream.turn.ids.assistant_message_id}
        ).scalar_one()
        counters = connection.execute(
            text("SELECT COUNT(*) FROM rate_limit_buckets WHERE key LIKE :k"), {"k": f"%user:{carol.id}"}
        ).scalar_one()
    engine.dispose()
    assert (messages, counters) == (0, 0)
