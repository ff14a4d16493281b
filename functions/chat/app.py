"""Chat function: stream answers over SSE, stop them, describe the model; plus the OpenAI-compatible /v1."""

from fastapi import APIRouter, status
from fastapi.responses import StreamingResponse
from sqlalchemy.orm import selectinload

from functions.chat.context import MessageTooLong, fit_window, prompt_limit
from functions.chat.generation import Generation, Turn
from functions.chat.openai_api import router as openai_router
from functions.chat.schemas import ChatCreate, StopPublic
from functions.chat.service import ChatModel, ModelUnavailable, holder
from model.engine import SamplingParams
from model.tokenizer import message_token_count
from shared.app import Component, create_app
from shared.crud import get_own_conversation
from shared.deps import ConversationId, CurrentUser, SessionDep
from shared.errors import APIError, error_responses
from shared.models import Conversation, Message, utcnow
from shared.settings import get_settings

router = APIRouter(tags=["chat"], responses=error_responses(401, 404))
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


async def loaded_model() -> ChatModel:
    try:
        return await holder.get()
    except ModelUnavailable as exc:
        raise APIError(503, "model_unavailable", str(exc), headers={"Retry-After": "10"}) from exc


def title_from(message: str, limit: int = 60) -> str:
    words = " ".join(message.split())
    return words if len(words) <= limit else words[: limit - 1].rstrip() + "…"


def sampling(body: ChatCreate) -> SamplingParams:
    return SamplingParams(
        temperature=body.temperature,
        top_k=body.top_k,
        top_p=body.top_p,
        max_new_tokens=body.max_new_tokens,
        seed=body.seed,
    )


@router.post(
    "/api/chat",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "meta, warning, token, done, error"}
    },
)
async def create_chat(body: ChatCreate, user: CurrentUser, session: SessionDep) -> StreamingResponse:
    """Send a message and stream the answer. The user message is saved before the first token."""
    model = await loaded_model()
    if model.scheduler.full():
        raise APIError(
            503, "busy", "Too many chats in progress; try again shortly", headers={"Retry-After": "5"}
        )
    if body.conversation_id is None:
        conversation = Conversation(user_id=user.id, title=title_from(body.message), messages=[])
        session.add(conversation)
    else:
        options = [selectinload(Conversation.messages)]
        conversation = await get_own_conversation(session, user, body.conversation_id, options=options)
    history = [{"role": m.role, "content": m.content} for m in conversation.messages if m.content]
    history.append({"role": "user", "content": body.message})
    limit = prompt_limit(model.block_size, body.max_new_tokens)
    try:
        prompt = fit_window(model.tokenizer, history, limit)
    except MessageTooLong as exc:
        await session.rollback()
        raise APIError(422, "message_too_long", str(exc), fields={"message": str(exc)}) from exc
    message = Message(
        role="user", content=body.message, token_count=message_token_count(model.tokenizer, history[-1])
    )
    conversation.messages.append(message)
    conversation.stop_requested_at = None
    conversation.updated_at = utcnow()
    await session.commit()
    generation = Generation(model, Turn(conversation.id, message.id, prompt, sampling(body), limit))
    return StreamingResponse(generation.events(), media_type="text/event-stream", headers=SSE_HEADERS)


@router.post(
    "/api/chat/{conversation_id}/stop", status_code=status.HTTP_202_ACCEPTED, response_model=StopPublic
)
async def stop_chat(conversation_id: ConversationId, user: CurrentUser, session: SessionDep) -> StopPublic:
    """Ask the generation in flight to stop: it reads this flag every few tokens, in any process."""
    conversation = await get_own_conversation(session, user, conversation_id)
    conversation.stop_requested_at = utcnow()
    await session.commit()
    return StopPublic(conversation_id=conversation.id, stop_requested=True)


@router.get("/api/model")
async def read_model(user: CurrentUser) -> dict:
    """The loaded model's card: config, parameters, training data, scores, licence notes."""
    return (await loaded_model()).card()


async def start_loading() -> None:
    holder.start(get_settings().model_dir)  # in the background: /api/health answers 503 until it is loaded


router.include_router(openai_router)
component = Component(
    router=router, startup=start_loading, shutdown=holder.stop, checks={"model": holder.health}
)
app = create_app("chat", [component])
