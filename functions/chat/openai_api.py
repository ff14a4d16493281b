"""OpenAI-compatible API (GET /v1/models, POST /v1/chat/completions), authenticated with the same bearer JWT,
so existing chat UIs and SDKs can talk to SLM. Stateless: nothing here is saved to a conversation."""

import json
import threading
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from functions.chat.context import MessageTooLong, fit_window, prompt_limit
from functions.chat.schemas import ANSWER_RESERVE, CompletionCreate
from functions.chat.service import ChatModel, ModelUnavailable, holder
from model.engine import SamplingParams, TextStreamer
from shared.deps import CurrentUser
from shared.errors import APIError, error_responses

router = APIRouter(prefix="/v1", tags=["openai"], responses=error_responses(401))
FINISH = {"eos": "stop", "length": "length", "stopped": "stop"}


def model_id(model: ChatModel) -> str:
    return str(model.config.get("name") or "slm")


async def _model() -> ChatModel:
    try:
        return await holder.get()
    except ModelUnavailable as exc:
        raise APIError(503, "model_unavailable", str(exc), headers={"Retry-After": "10"}) from exc


@router.get("/models")
async def list_models(user: CurrentUser) -> dict[str, Any]:
    model = await _model()
    return {
        "object": "list",
        "data": [{"id": model_id(model), "object": "model", "created": 0, "owned_by": "slm"}],
    }


async def _generate(model: ChatModel, body: CompletionCreate) -> AsyncIterator[tuple[str, Any]]:
    """("text", delta) events, then ("finish", reason, prompt_tokens, completion_tokens)."""
    max_new = body.max_completion_tokens or body.max_tokens or ANSWER_RESERVE
    messages = [m.model_dump() for m in body.messages]
    try:
        prompt = fit_window(model.tokenizer, messages, prompt_limit(model.block_size, max_new))
    except MessageTooLong as exc:
        raise APIError(400, "context_length_exceeded", str(exc)) from exc
    except ValueError as exc:  # an order the chat format cannot render, e.g. a system message last
        raise APIError(400, "invalid_messages", f"The messages cannot be used: {exc}") from exc
    params = SamplingParams(
        temperature=body.temperature, top_k=0, top_p=body.top_p, max_new_tokens=max_new, seed=body.seed
    )
    cancelled, streamer, tokens = threading.Event(), TextStreamer(model.tokenizer), 0
    try:
        async for kind, value in model.stream(prompt.ids, params, cancelled):
            if kind == "token":
                tokens += 1
                if text := streamer.put(value):
                    yield "text", text
            elif kind == "error":
                raise APIError(500, "generation_failed", str(value))
            elif kind == "done":
                if tail := streamer.end():
                    yield "text", tail
                yield "finish", (FINISH[value], len(prompt.ids), tokens)
    finally:
        cancelled.set()  # the client went away: stop generating


@router.post(
    "/chat/completions", responses={200: {"content": {"text/event-stream": {}, "application/json": {}}}}
)
async def create_completion(body: CompletionCreate, user: CurrentUser) -> Any:
    model = await _model()
    completion_id, created, name = f"chatcmpl-{uuid.uuid4().hex}", int(time.time()), model_id(model)
    events = _generate(model, body)
    if not body.stream:
        parts, finish = [], ("stop", 0, 0)
        async for kind, value in events:
            if kind == "text":
                parts.append(value)
            else:
                finish = value
        reason, prompt_tokens, completion_tokens = finish
        return {
            "id": completion_id,
            "object": "chat.completion",
            "created": created,
            "model": name,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "".join(parts)},
                    "finish_reason": reason,
                    "logprobs": None,
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }
    first = await anext(events)  # errors before the first token still answer as JSON

    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> str:
        body = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": name,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}],
        }
        return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"

    async def stream() -> AsyncIterator[str]:
        yield chunk({"role": "assistant", "content": ""})
        event: tuple[str, Any] | None = first
        while event is not None:
            kind, value = event
            yield chunk({"content": value}) if kind == "text" else chunk({}, value[0])
            event = await anext(events, None)
        yield "data: [DONE]\n\n"

    return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
