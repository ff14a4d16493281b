"""Conversations function: the caller's own conversations: list, create, read (the active branch), rename or
switch branch, delete, export, and stop the answer in flight."""

from shared import coldstart

coldstart.pause()  # no cyclic collection while the modules below are imported (see resume below)

import json
from typing import Annotated, Any, cast

from fastapi import APIRouter, Query, Response, status
from sqlalchemy import Table, func, select, update
from sqlalchemy.orm import selectinload

from shared import stops
from shared.app import Component, create_app
from shared.crud import (
    finalize_stale_answers,
    get_own_conversation,
    insert_within_cap,
    too_many_conversations,
)
from shared.database import writing
from shared.deps import ConversationId, CurrentUser, SessionDep, SettingsDep
from shared.errors import error_responses, not_found
from shared.models import Conversation, utcnow
from shared.schemas import (
    NO_NUL,
    ContextPublic,
    ConversationCreate,
    ConversationDetail,
    ConversationPublic,
    ConversationsPublic,
    ConversationUpdate,
    MessagePublic,
    StopPublic,
)
from shared.settings import get_settings
from shared.tree import Tree, active_branch, context_window, history

router = APIRouter(prefix="/api/conversations", tags=["conversations"], responses=error_responses(401, 404))
DEFAULT_TITLE = "New chat"
CONVERSATIONS = cast(Table, Conversation.__table__)


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


@router.post(
    "", status_code=status.HTTP_201_CREATED, response_model=ConversationPublic, responses=error_responses(429)
)
async def create_conversation(
    user: CurrentUser, session: SessionDep, settings: SettingsDep, body: ConversationCreate | None = None
) -> ConversationPublic:
    """A new conversation (no body, or `{}`: titled "New chat"); at most max_conversations_per_user of them."""
    title = (body.title if body is not None else None) or DEFAULT_TITLE
    cap, now = settings.max_conversations_per_user, utcnow()
    values = {"user_id": user.id, "title": title, "created_at": now, "updated_at": now}
    async with writing(session):
        conversation_id = await insert_within_cap(session, CONVERSATIONS, user.id, cap, values)
        if conversation_id is None:
            await session.rollback()
            raise too_many_conversations(cap)
        await session.commit()
    return ConversationPublic(id=conversation_id, title=title, created_at=now, updated_at=now)


def detail(conversation: Conversation) -> ConversationDetail:
    tree, branch = active_branch(conversation)
    fields = ("id", "role", "content", "parent_id", "finish_reason", "token_count", "created_at")
    messages = [
        MessagePublic(**{f: getattr(m, f) for f in fields}, sibling_ids=tree.sibling_ids(m)) for m in branch
    ]
    return ConversationDetail(
        id=conversation.id,
        title=conversation.title,
        created_at=conversation.created_at,
        updated_at=conversation.updated_at,
        current_message_id=conversation.current_message_id,
        messages=messages,
        context=ContextPublic(**window) if (window := context_window(branch)) else None,
    )


@router.get("/{conversation_id}", response_model=ConversationDetail)
async def read_conversation(
    conversation_id: ConversationId, user: CurrentUser, session: SessionDep
) -> ConversationDetail:
    """The conversation and its active branch; each message lists its siblings (the other versions)."""
    conversation = await get_own_conversation(
        session, user, conversation_id, options=[selectinload(Conversation.messages)]
    )
    await finalize_stale_answers(session, conversation.messages, get_settings().stale_answer_seconds)
    return detail(conversation)


@router.patch("/{conversation_id}", response_model=ConversationPublic)
async def update_conversation(
    conversation_id: ConversationId, body: ConversationUpdate, user: CurrentUser, session: SessionDep
) -> Conversation:
    """Rename, and/or switch branch: `current_message_id` X makes root → X → X's newest descendants active."""
    conversation = await get_own_conversation(
        session, user, conversation_id, options=[selectinload(Conversation.messages)]
    )
    values: dict[str, Any] = {}
    if body.current_message_id is not None:
        tree = Tree(conversation.messages)
        if body.current_message_id not in tree.by_id:
            raise not_found("Message")
        values["current_message_id"] = tree.newest_leaf(body.current_message_id)
    if body.title is not None:
        values["title"] = body.title
    else:  # a branch switch alone is no new activity: the list's order (updated_at) stays where it was
        values["updated_at"] = Conversation.updated_at
    await session.execute(update(Conversation).where(Conversation.id == conversation.id).values(**values))
    await session.commit()
    await session.refresh(conversation)
    return conversation


@router.delete("/{conversation_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_conversation(
    conversation_id: ConversationId, user: CurrentUser, session: SessionDep
) -> Response:
    """Delete the conversation and its messages. Its answer still generating stops: in this process at
    its next decode step, elsewhere at its next save (which finds the conversation gone and writes nothing)."""
    conversation = await get_own_conversation(session, user, conversation_id)
    await session.delete(conversation)
    await session.commit()
    stops.announce(conversation_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/{conversation_id}/export",
    response_class=Response,
    responses={200: {"content": {"application/x-ndjson": {}}, "description": "one JSON line"}},
)
async def export_conversation(
    conversation_id: ConversationId, user: CurrentUser, session: SessionDep
) -> Response:
    """The active branch as JSONL `{"messages": [{"role", "content"}]}`, the format the trainer reads:
    its turns as a prompt holds them (an answer without text says nothing), each answer as it ended (also
    one stopped or cut short: what the user saw), less an answer still being written, whose text is not
    yet what the conversation will hold. An answer no generator saves any more ends as failed ("error")
    first, as when the conversation is read, and is exported with what was saved."""
    conversation = await get_own_conversation(
        session, user, conversation_id, options=[selectinload(Conversation.messages)]
    )
    await finalize_stale_answers(session, conversation.messages, get_settings().stale_answer_seconds)
    _, branch = active_branch(conversation)
    ended = [m for m in branch if m.role != "assistant" or m.finish_reason is not None]
    line = json.dumps({"messages": history(ended)}, ensure_ascii=False)
    return Response(
        line + "\n",
        media_type="application/x-ndjson",
        headers={"Content-Disposition": f'attachment; filename="conversation-{conversation.id}.jsonl"'},
    )


@router.post("/{conversation_id}/stop", status_code=status.HTTP_202_ACCEPTED, response_model=StopPublic)
async def stop_conversation(
    conversation_id: ConversationId, user: CurrentUser, session: SessionDep
) -> StopPublic:
    """Stop the answer in flight: a flag in the database that the generator (in any process or Lambda
    instance, or still waiting in the queue) reads every few tokens; it ends the answer as `stopped`."""
    conversation = await get_own_conversation(session, user, conversation_id)
    # a stop is no new activity: the list's order (updated_at) stays where it was
    stop = {"stop_requested_at": utcnow(), "updated_at": Conversation.updated_at}
    await session.execute(update(Conversation).where(Conversation.id == conversation.id).values(**stop))
    await session.commit()
    stops.announce(conversation.id)  # an answer generated in this same process ends at once
    return StopPublic(conversation_id=conversation.id, stop_requested=True)


component = Component(router=router)
app = create_app("conversations", [component])
coldstart.resume()
