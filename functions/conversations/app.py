"""Conversations function: the caller's own conversations: list, create, read, rename, delete, export."""

import json
from typing import Annotated

from fastapi import APIRouter, Query, Response, status
from sqlalchemy import func, select
from sqlalchemy.orm import selectinload

from shared.app import Component, create_app
from shared.crud import get_own_conversation
from shared.deps import ConversationId, CurrentUser, SessionDep
from shared.errors import error_responses
from shared.models import Conversation
from shared.schemas import (
    NO_NUL,
    ConversationCreate,
    ConversationDetail,
    ConversationPublic,
    ConversationsPublic,
    ConversationUpdate,
)

router = APIRouter(prefix="/api/conversations", tags=["conversations"], responses=error_responses(401, 404))
DEFAULT_TITLE = "New chat"


@router.get("", response_model=ConversationsPublic)
async def read_conversations(
    user: CurrentUser,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    q: Annotated[
        str | None, Query(max_length=200, pattern=NO_NUL, description="case-insensitive title search")
    ] = None,
) -> ConversationsPublic:
    where = [Conversation.user_id == user.id]
    if q and q.strip():
        pattern = "%" + q.strip().lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        where.append(func.lower(Conversation.title).like(pattern, escape="\\"))
    total = await session.scalar(select(func.count()).select_from(Conversation).where(*where))
    rows = await session.scalars(
        select(Conversation)
        .where(*where)
        .order_by(Conversation.updated_at.desc(), Conversation.id.desc())
        .limit(limit)
        .offset(offset)
    )
    items = [ConversationPublic.model_validate(c) for c in rows]
    return ConversationsPublic(items=items, total=total or 0, limit=limit, offset=offset)


@router.post("", status_code=status.HTTP_201_CREATED, response_model=ConversationPublic)
async def create_conversation(
    body: ConversationCreate, user: CurrentUser, session: SessionDep
) -> Conversation:
    conversation = Conversation(user_id=user.id, title=body.title or DEFAULT_TITLE)
    session.add(conversation)
    await session.commit()
    return conversation


@router.get("/{conversation_id}", response_model=ConversationDetail)
async def read_conversation(
    conversation_id: ConversationId, user: CurrentUser, session: SessionDep
) -> Conversation:
    return await get_own_conversation(
        session, user, conversation_id, options=[selectinload(Conversation.messages)]
    )


@router.patch("/{conversation_id}", response_model=ConversationPublic)
async def update_conversation(
    conversation_id: ConversationId, body: ConversationUpdate, user: CurrentUser, session: SessionDep
) -> Conversation:
    conversation = await get_own_conversation(session, user, conversation_id)
    conversation.title = body.title
    await session.commit()
    await session.refresh(conversation)
    return conversation


@router.delete("/{conversation_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_conversation(
    conversation_id: ConversationId, user: CurrentUser, session: SessionDep
) -> Response:
    conversation = await get_own_conversation(session, user, conversation_id)
    await session.delete(conversation)
    await session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/{conversation_id}/export",
    response_class=Response,
    responses={200: {"content": {"application/x-ndjson": {}}, "description": "one JSON line"}},
)
async def export_conversation(
    conversation_id: ConversationId, user: CurrentUser, session: SessionDep
) -> Response:
    """The conversation as JSONL `{"messages": [{"role", "content"}]}`, the format the trainer reads."""
    conversation = await get_own_conversation(
        session, user, conversation_id, options=[selectinload(Conversation.messages)]
    )
    line = json.dumps(
        {"messages": [{"role": m.role, "content": m.content} for m in conversation.messages]},
        ensure_ascii=False,
    )
    return Response(
        line + "\n",
        media_type="application/x-ndjson",
        headers={"Content-Disposition": f'attachment; filename="conversation-{conversation.id}.jsonl"'},
    )


component = Component(router=router)
app = create_app("conversations", [component])
