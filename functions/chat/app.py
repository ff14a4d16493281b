"""Chat function: stream answers over SSE and follow them from the database, describe the model; plus the
OpenAI-compatible /v1. (Stopping is the conversations function's: a database flag.)"""

from shared import coldstart

coldstart.pause()  # no cyclic collection while the modules below are imported (see resume below)

from functions.chat import early  # noqa: F401 (first: the model loads beside the imports below)

# isort: split
import threading
import time
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Header, Query
from fastapi.responses import StreamingResponse
from sqlalchemy.orm import selectinload

from functions.chat import arrivals, follow, metrics, rows
from functions.chat.generation import LIVE_SECONDS, Generation, Turn, ended_here, saving_later
from functions.chat.openai_api import router as openai_router
from functions.chat.schemas import ChatCreate, sampling_params
from functions.chat.service import AdmittedModel, LoadedModel, holder
from functions.chat.sse import SSE_HEADERS
from model.tokenizer import PromptTooLong, fit_prompt, message_token_count
from shared import ratelimit
from shared.app import Component, create_app
from shared.crud import finalize_stale_answers, get_own_conversation
from shared.database import writing
from shared.deps import ConversationId, CurrentUser, SessionDep, SettingsDep
from shared.errors import APIError, error_responses, not_found
from shared.models import Conversation, Message, utcnow
from shared.settings import get_settings
from shared.tree import Tree, active_branch, history

router = APIRouter(tags=["chat"], responses=error_responses(401, 404))


def title_from(message: str, limit: int = 60) -> str:
    words = " ".join(message.split())
    return words if len(words) <= limit else words[: limit - 1].rstrip() + "…"


@router.post(
    "/api/chat",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "meta, warning, token, done, error"},
        **error_responses(409, 422, 429, 503),
    },
)
async def create_chat(
    body: ChatCreate, user: CurrentUser, session: SessionDep, settings: SettingsDep, model: AdmittedModel
) -> StreamingResponse:
    """Send a message (or regenerate an answer) and stream the answer. The user message and the answer's
    row are saved before the first token; the answer is saved as it grows and runs to its end even when
    the client goes away (follow it with GET /api/chat/{conversation_id}/events)."""
    arrived, asked_at = time.perf_counter(), utcnow()  # a stop of the conversation from then on ends it
    if body.conversation_id is None:
        if body.follows[1] is not None:
            raise not_found("Message")
        assert body.message is not None
        # not added to the session: write_turn inserts it
        conversation = Conversation(user_id=user.id, title=title_from(body.message), messages=[])
    else:
        options = [selectinload(Conversation.messages)]
        conversation = await get_own_conversation(session, user, body.conversation_id, options=options)
        await finalize_stale_answers(
            session, not_saving_later(conversation.messages), settings.stale_answer_seconds
        )
    question, parent_id, turns = where_it_goes(body, conversation)
    params = sampling_params(body)
    try:
        prompt = fit_prompt(model.tokenizer, turns, model.block_size, params.max_new_tokens)
    except PromptTooLong as exc:
        raise APIError(422, "message_too_long", str(exc), fields={"message": str(exc)}) from exc
    context = {  # DESIGN's meta.context: `limit` is the model's window; `budget` what the prompt may take of it
        "tokens": len(prompt.ids),
        "limit": model.block_size,
        "window": model.block_size,
        "budget": prompt.limit,
        "dropped_messages": prompt.dropped,
    }
    message_tokens = message_token_count(model.tokenizer, turns[-1]) if question is None else 0
    cancelled = threading.Event()
    # One write transaction before the first token: the limits (429 when this minute's messages or the
    # day's tokens are spent; else the answer's tokens are reserved) and the turn's rows commit together,
    # so a request refused or failed on the way (a 429, a full queue's 503, a client gone) counts nothing
    # and stores nothing: writing() rolls a failed block back.
    async with writing(session):
        try:
            reserved = await ratelimit.reserve_chat(
                session, user.id, settings, model.budget(prompt.ids, params)
            )
            # queued before the rows are written: the prompt's prefill runs in the scheduler's thread while
            # this request writes (the events wait in their queue)
            events = model.open_stream(prompt.ids, params, cancelled, user.id)
            ids = await rows.write_turn(
                session,
                conversation=conversation,
                question=question,
                parent_id=parent_id,
                message=turns[-1]["content"],
                message_tokens=message_tokens,
                context=context,
                max_conversations=settings.max_conversations_per_user,
                asked_at=asked_at,
            )
            await session.commit()
        except BaseException:  # a stream opened stops at its next step, nobody reads it
            cancelled.set()
            raise
    arrivals.arrived()  # what precedes the first token is done: the scheduler's decode steps need not wait for it
    turn = Turn(
        ids=ids,
        prompt=prompt,
        params=params,
        context=context,
        title=conversation.title,
        user_id=user.id,
        reserved=reserved,
        arrived=arrived,
    )
    generation = Generation(model, turn, events, cancelled)
    return StreamingResponse(generation.events(), media_type="text/event-stream", headers=SSE_HEADERS)


def not_saving_later(messages: list[Message]) -> list[Message]:
    """The messages the stale rule may finalize here: not an answer whose final save this process is
    trying again (not saved for a while, but whole here: it is saved once the database is back)."""
    return [m for m in messages if not saving_later(m.id)]


def being_written(answer: Message) -> bool:
    """An answer in progress whose generator is alive: saved within LIVE_SECONDS, and not one this
    process finished (its final save may have failed while the database was away), unless this process
    is still trying that final save again (the database holds less than the whole answer)."""
    if saving_later(answer.id):  # also once another process's stale rule has called it failed
        return True
    if answer.finish_reason is not None or ended_here(answer.id):
        return False
    return answer.updated_at >= utcnow() - timedelta(seconds=LIVE_SECONDS)


def where_it_goes(body: ChatCreate, conversation: Conversation) -> tuple[Message | None, int | None, list]:
    """(the question answered again, or None for a new message; the new message's parent; the turns of
    the prompt, root first): a regenerate answers its answer's question again, a message follows
    `parent_id` when given (null: the conversation starts again) and the active branch's end when not.
    404 for a message that is not this conversation's; 422 for a parent_id that names a user message; 409
    for a reply to an answer still being written."""
    tree = Tree(conversation.messages)
    given, parent_id = body.follows
    if body.regenerate is not None:  # a sibling of that answer, to the same question
        answer = tree.by_id.get(body.regenerate)
        if answer is None or answer.role != "assistant" or answer.parent_id is None:
            raise not_found("Message")
        question = tree.by_id[answer.parent_id]
        return question, question.parent_id, history(tree.path(question.id))
    if not given:
        parent_id = conversation.current_message_id if conversation.current_message_id in tree.by_id else None
    if parent_id is not None and parent_id not in tree.by_id:
        raise not_found("Message")
    parent = tree.by_id.get(parent_id) if parent_id is not None else None
    # turns alternate, as the trainer reads them: a new message follows an answer, or starts again
    if given and parent is not None and parent.role != "assistant":
        reason = "a new message follows an answer (an assistant message's id), or null to start again"
        raise APIError(
            422, "validation_error", f"Invalid request: parent_id: {reason}", fields={"parent_id": reason}
        )
    if parent is not None and parent.role == "assistant" and being_written(parent):
        # its prompt would hold the answer as it stands now, and the tree the answer as it ends
        raise APIError(
            409,
            "answer_in_progress",
            "The answer this message replies to is still being written: wait for it to end, or stop it",
        )
    assert body.message is not None
    return None, parent_id, [*history(tree.path(parent_id)), {"role": "user", "content": body.message}]


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
    then live while the answer is in progress, then `done`; with no id, the whole answer (also one that
    has ended). Waiting holds no database connection (functions/chat/follow.py)."""
    if last_event_id:
        after = int(last_event_id)
    conversation = await get_own_conversation(
        session, user, conversation_id, options=[selectinload(Conversation.messages)]
    )
    await finalize_stale_answers(
        session, not_saving_later(conversation.messages), get_settings().stale_answer_seconds
    )
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
router.include_router(metrics.router)
component = Component(
    router=router,
    startup=start_loading,
    shutdown=holder.stop,
    checks={"model": holder.health},
    middleware=[metrics.RequestMetrics, arrivals.CountArrivals],
    body_limits={"/v1/chat/completions": get_settings().openai_max_body_bytes},
)
app = create_app("chat", [component])
coldstart.resume()
