"""On PostgreSQL a chat turn's transaction (the user's limits, then the turn's rows) and an account's
deletion (the user, then the user's counters) take the user's row first, so neither waits on the other
in a cycle: a chat turn while its account is being deleted is refused, never a deadlock."""

import asyncio
import uuid

import pytest
from sqlalchemy import delete, or_
from sqlalchemy.exc import DBAPIError

from functions.chat import rows
from shared import ratelimit
from shared.database import build_engine
from shared.migrate import upgrade
from shared.models import Conversation, RateLimitBucket, User
from shared.settings import Settings


@pytest.mark.postgres
def test_a_chat_turn_and_the_deletion_of_its_account_never_deadlock(postgresql_url: str) -> None:
    from sqlalchemy.ext.asyncio import async_sessionmaker

    upgrade(postgresql_url)
    settings = Settings()

    async def scenario() -> tuple[BaseException | None, BaseException | None]:
        engine = build_engine(postgresql_url)
        sessions = async_sessionmaker(engine, expire_on_commit=False)
        try:
            async with sessions() as session:
                user = User(email=f"locks-{uuid.uuid4().hex[:8]}@example.com", password_hash="x")
                session.add(user)
                await session.commit()
                await ratelimit.reserve_chat(session, user.id, settings, 32)  # an earlier answer: counters
                await session.commit()

            async def chat_turn() -> None:  # what POST /api/chat does in its one transaction
                async with sessions() as session:
                    await ratelimit.reserve_chat(session, user.id, settings, 32)
                    conversation = Conversation(user_id=user.id, title="hi", messages=[])
                    await rows.write_turn(
                        session,
                        conversation=conversation,
                        question=None,
                        parent_id=None,
                        message="hi",
                        message_tokens=1,
                        context={},
                        max_conversations=10,
                    )
                    await session.commit()

            async with sessions() as deleting:  # what DELETE /api/auth/me does, the user first
                await deleting.delete(await deleting.get(User, user.id))
                await deleting.flush()
                chat = asyncio.create_task(chat_turn())
                await asyncio.sleep(0.3)  # the turn starts while the deletion holds the user
                deleted: BaseException | None = None
                try:
                    await deleting.execute(
                        delete(RateLimitBucket).where(or_(*ratelimit.keys_of(user.id, user.email)))
                    )
                    await deleting.commit()
                except DBAPIError as exc:
                    deleted = exc
            refused = (await asyncio.gather(chat, return_exceptions=True))[0]
            return deleted, refused
        finally:
            await engine.dispose()

    deleted, refused = asyncio.run(scenario())
    assert deleted is None, deleted  # the account is gone
    # the turn found its user gone (no conversation for a user that is not there), not a deadlock
    assert refused is not None and "deadlock" not in str(refused).lower(), refused
