"""Chat function: stream answers over SSE and follow them from the database, describe the model; plus the
OpenAI-compatible /v1. (Stopping is the conversations function's: a database flag.)"""

import asyncio
import threading
from typing import Annotated, Any, cast

from fastapi import APIRouter, Header, Query
from fastapi.responses import StreamingResponse
from sqlalchemy import Table, insert, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm import selectinload

from functions.chat import follow
from functions.chat.context import MessageTooLong, fit_window, prompt_limit
from functions.chat.generation import Generation, Turn
from functions.chat.openai_api import router as openai_router
from functions.chat.schemas import ChatCreate
from functions.chat.service import AdmittedModel, LoadedModel, holder
from functions.chat.sse import SSE_HEADERS
from model.sampling import SamplingParams
from model.tokenizer import Tokenizer, message_token_count
from shared import ratelimit
from shared.app import Component, create_app
from shared.crud import get_own_conversation, insert_within_cap, too_many_conversations
from shared.database import writing
from shared.deps import ConversationId, CurrentUser, SessionDep, SettingsDep
from shared.errors import APIError, error_responses, not_found
from shared.models import Conversation, Message, utcnow
from shared.settings import Settings, get_settings
from shared.tree import Tree, active_branch, finalize_stale, history

router = APIRouter(tags=["chat"], responses=error_responses(401, 404))


def title_from(message: str, limit: int = 60) -> str:
    words = " ".join(message.split())
    return words if len(words) <= limit else words[: limit - 1].rstrip() + "…"


def sampling(body: ChatCreate) -> SamplingParams:
    return SamplingParams(
        temperature=body.temperature,
        top_k=body.top_k,
        top_p=body.top_p,
        max_new_tokens=body.max_new_tokens,
        min_new_tokens=body.min_new_tokens,
        seed=body.seed,
    )


@router.post(
    "/api/chat",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "meta, warning, token, done, error"},
        **error_responses(422, 429, 503),
    },
)
async def create_chat(
    body: ChatCreate, user: CurrentUser, session: SessionDep, settings: SettingsDep, model: AdmittedModel
) -> StreamingResponse:
    """Send a message (or regenerate an answer) and stream the answer. The user message and the answer's
    row are saved before the first token; the answer is saved as it grows and runs to its end even when
    the client goes away (follow it with GET /api/chat/{conversation_id}/events)."""
    given, parent_id = body.follows
    if body.conversation_id is None:
        if parent_id is not None:
            raise not_found("Message")
        assert body.message is not None
        # not added to the session: write_turn inserts it
        conversation = Conversation(user_id=user.id, title=title_from(body.message), messages=[])
    else:
        options = [selectinload(Conversation.messages)]
        conversation = await get_own_conversation(session, user, body.conversation_id, options=options)
        finalize_stale(conversation.messages, get_settings().stale_answer_seconds)
    tree = Tree(conversation.messages)
    question: Message | None = None
    if body.regenerate is not None:  # a sibling of that answer, to the same question
        answer = tree.by_id.get(body.regenerate)
        if answer is None or answer.role != "assistant" or answer.parent_id is None:
            raise not_found("Message")
        question = tree.by_id[answer.parent_id]
        path = tree.path(question.id)
    else:
        if not given:
            parent_id = (
                conversation.current_message_id if conversation.current_message_id in tree.by_id else None
            )
        if parent_id is not None and parent_id not in tree.by_id:
            raise not_found("Message")
        path = tree.path(parent_id)
    turns = history(path)
    if question is None:
        assert body.message is not None
        turns.append({"role": "user", "content": body.message})
    limit = prompt_limit(model.block_size, body.max_new_tokens)
    try:
        prompt = fit_window(model.tokenizer, turns, limit)
    except MessageTooLong as exc:
        await session.rollback()
        raise APIError(422, "message_too_long", str(exc), fields={"message": str(exc)}) from exc
    cancelled, params = threading.Event(), sampling(body)
    # 429 when this minute's messages or the day's tokens are spent; else the answer's tokens are reserved
    reserved = await ratelimit.admit_chat(session, user.id, settings, model.budget(prompt.ids, params))
    context = {
        "tokens": len(prompt.ids),
        "limit": limit,
        "window": model.block_size,
        "dropped_messages": prompt.dropped,
    }
    try:
        # queued before the rows are written: a full queue is a 503 with nothing stored, and the prompt's
        # prefill runs in the scheduler's thread while this request writes (the events wait in their queue)
        events = model.open_stream(prompt.ids, params, cancelled, user.id)
        ids = await write_turn(
            session, conversation, question, parent_id, turns[-1], context, model.tokenizer, settings
        )
    except BaseException:  # nothing stored: the generation stops at its next step, nobody reads it
        cancelled.set()
        await asyncio.shield(give_back(session, reserved))
        raise
    turn = Turn(*ids, prompt, params, context, conversation.title, user.id, reserved)
    generation = Generation(model, turn, events, cancelled)
    return StreamingResponse(generation.events(), media_type="text/event-stream", headers=SSE_HEADERS)


async def give_back(session: AsyncSession, reserved: ratelimit.Taken) -> None:
    """A refused or failed request returns the tokens it reserved."""
    await session.rollback()
    async with writing(session):
        await ratelimit.give_back(session, reserved)
        await session.commit()


async def write_turn(
    session: AsyncSession,
    conversation: Conversation,
    question: Message | None,
    parent_id: int | None,
    user_turn: dict[str, str],
    context: dict[str, int],
    tokenizer: Tokenizer,
    settings: Settings,
) -> tuple[int, int, int]:
    """The rows of one turn, committed before the first token: the conversation when it is new (429 past
    the user's cap), the user message (unless this regenerates `question`'s answer), the empty answer,
    and the conversation pointing at it. Core statements, not the ORM's unit of work: this is on every
    answer's first-token path, and 8 requests at once pay it one after another on one event loop. Returns
    (conversation id, user message id, answer id)."""
    conversations, messages = cast(Table, Conversation.__table__), cast(Table, Message.__table__)
    now = utcnow()
    count = message_token_count(tokenizer, user_turn) if question is None else 0  # outside the lock

    async def insert_id(connection: AsyncConnection, table: Table, **values: Any) -> int:
        key = (await connection.execute(insert(table).values(**values))).inserted_primary_key
        assert key is not None
        return int(key[0])

    async with writing(session) as connection:
        conversation_id = conversation.id
        if conversation_id is None:
            cap = settings.max_conversations_per_user
            values = {
                "user_id": conversation.user_id,
                "title": conversation.title,
                "created_at": now,
                "updated_at": now,
            }
            conversation_id = await insert_within_cap(
                session, conversations, conversation.user_id, cap, values
            )
            if conversation_id is None:
                raise too_many_conversations(cap)
        if question is None:
            question_id = await insert_id(
                connection,
                messages,
                conversation_id=conversation_id,
                role="user",
                content=user_turn["content"],
                parent_id=parent_id,
                token_count=count,
                created_at=now,
                updated_at=now,
            )
        else:
            question_id = question.id
        answer_id = await insert_id(
            connection,
            messages,
            conversation_id=conversation_id,
            role="assistant",
            content="",
            parent_id=question_id,
            token_count=0,
            token_ids="",
            context=context,
            created_at=now,
            updated_at=now,
        )
        await connection.execute(
            update(conversations)
            .where(conversations.c.id == conversation_id, conversations.c.user_id == conversation.user_id)
            .values(current_message_id=answer_id, stop_requested_at=None, updated_at=now)
        )
        await session.commit()
    return conversation_id, question_id, answer_id


@router.get(
    "/api/chat/{conversation_id}/events",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "meta, token, done, error"},
        **error_responses(429),
    },
)
async def follow_chat(
    conversation_id: ConversationId,
    user: CurrentUser,
    session: SessionDep,
    model: LoadedModel,
    after: Annotated[
        int | None, Query(ge=-1, le=100_000, description="the last token index already seen")
    ] = None,
    last_event_id: Annotated[
        str,
        Header(
            pattern=r"^(-1|[0-9]{1,6})?$",
            description="the last token index seen (the SSE id); wins over after",
        ),
    ] = "",
) -> StreamingResponse:
    """Follow the conversation's answer from the database (from any process): the active branch's, else the
    newest: `meta`, every `token` after `Last-Event-ID` (or `?after=N`), replayed from what is saved and
    then live while the answer is in progress, then `done`. With no id and nothing in progress: `done` at
    once. Waiting holds no database connection (functions/chat/follow.py)."""
    if last_event_id:
        after = int(last_event_id)
    conversation = await get_own_conversation(
        session, user, conversation_id, options=[selectinload(Conversation.messages)]
    )
    if finalize_stale(conversation.messages, get_settings().stale_answer_seconds):
        async with writing(session):
            await session.commit()
    tree, branch = active_branch(conversation)
    # the active branch's answer (the one a page shows, also an older version switched back to), else the newest
    answer = branch[-1] if branch and branch[-1].role == "assistant" else tree.latest_answer()
    if answer is None:
        raise not_found("Answer")
    body = follow.start(model.tokenizer, user.id, conversation.id, answer, after)  # 429: too many followers
    return StreamingResponse(body, media_type="text/event-stream", headers=SSE_HEADERS)


@router.get("/api/model")
async def read_model(user: CurrentUser, model: LoadedModel) -> dict:
    """The loaded model's card: config, parameters, training data, scores, licence notes."""
    return model.card()


async def start_loading() -> None:
    holder.start(get_settings().model_dir)  # in the background: /api/health answers 503 until it is loaded


router.include_router(openai_router)
component = Component(
    router=router, startup=start_loading, shutdown=holder.stop, checks={"model": holder.health}
)
app = create_app("chat", [component])
