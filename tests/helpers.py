"""Helpers shared by test modules (a test module never imports another test module)."""

from typing import Any

# the JWT key of the test settings (tests/conftest.py sets SLM_JWT_SECRET to it)
SECRET = "test-secret-key-that-is-long-enough-1234"
# an answer of exactly 48 tokens: <|eos|> is not sampled before min_new_tokens
LONG = {"temperature": 0.8, "max_new_tokens": 48, "min_new_tokens": 48, "seed": 1}


def assert_error(response: Any, status: int, code: str | None = None) -> dict:
    """The response has this status and the one error shape (and this code); returns the error."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and isinstance(body["error"]["message"], str) and body["error"]["message"]
    if code:
        assert body["error"]["code"] == code
    return body["error"]


def add_messages(
    database_url: str, conversation_id: int, messages: list[tuple[str, str]], parent_id: int | None = -1
) -> list[int]:
    """Append a chain of messages after `parent_id` (-1: the end of the active branch), make its end the
    active branch, and return their ids."""
    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session

    from shared.migrate import sync_url
    from shared.models import Conversation, Message

    engine = create_engine(sync_url(database_url))
    ids = []
    with Session(engine) as session:
        conversation = session.get(Conversation, conversation_id)
        assert conversation is not None
        parent = conversation.current_message_id if parent_id == -1 else parent_id
        for role, content in messages:
            reason = "eos" if role == "assistant" else None
            message = Message(
                conversation_id=conversation_id,
                role=role,
                content=content,
                finish_reason=reason,
                parent_id=parent,
            )
            session.add(message)
            session.flush()
            parent = message.id
            ids.append(message.id)
        conversation.current_message_id = parent
        session.commit()
    engine.dispose()
    return ids


def request_stop(database_url: str, conversation_id: int) -> None:
    """Set the conversation's stop flag in the database, as POST /api/conversations/{id}/stop does."""
    from sqlalchemy import create_engine, text

    from shared.migrate import sync_url

    engine = create_engine(sync_url(database_url))
    with engine.begin() as connection:
        connection.execute(
            text("UPDATE conversations SET stop_requested_at = CURRENT_TIMESTAMP WHERE id = :c"),
            {"c": conversation_id},
        )
    engine.dispose()


def within_one_window(seconds_needed: float) -> None:
    """Return when at least `seconds_needed` are left in the current minute (waiting for the next one if
    not). The limits count in fixed windows aligned to the minute (60 s, 15 min, an hour and a day all
    start on one), so a test that starts here and takes less never sees a counter reset midway."""
    import time

    left = 60 - time.time() % 60
    if left < seconds_needed:
        time.sleep(left + 0.01)  # until the next minute starts
