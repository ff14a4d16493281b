"""Plain data-access functions shared by more than one function."""

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from shared.errors import not_found
from shared.models import Conversation, User


async def get_own_conversation(
    session: AsyncSession, user: User, conversation_id: int, options: Sequence[Any] = ()
) -> Conversation:
    """The user's conversation; another user's (or none) is a 404, never a 403, so its existence stays hidden."""
    conversation = await session.scalar(
        select(Conversation)
        .where(Conversation.id == conversation_id, Conversation.user_id == user.id)
        .options(*options)
    )
    if conversation is None:
        raise not_found("Conversation")
    return conversation
