"""OpenAI-compatible API (GET /v1/models, POST /v1/chat/completions), authenticated with an API key
(`slm-...`, from /api/auth/keys) or the bearer JWT, so existing chat UIs and SDKs can talk to SLM.
Stateless: nothing here is saved to a conversation."""

import asyncio
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from functions.chat.context import MessageTooLong, Prompt, fit_window, prompt_limit
from functions.chat.schemas import ANSWER_RESERVE, CompletionCreate
from functions.chat.service import AdmittedModel, ChatModel, LoadedModel
from model.sampling import SamplingParams
from model.tokenizer import TextStreamer
from shared import ratelimit
from shared.database import get_sessionmaker, writing
from shared.deps import ApiUser, SessionDep, SettingsDep
from shared.errors import APIError, error_responses

router = APIRouter(prefix="/v1", tags=["openai"], responses=error_responses(401))
FINISH = {"eos": "stop", "length": "length", "stopped": "stop"}


def model_id(model: ChatModel) -> str:
    return str(model.config.get("name") or "slm")


@router.get("/models")
async def list_models(user: ApiUser, model: LoadedModel) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [{"id": model_id(model), "object": "model", "created": 0, "owned_by": "slm"}],
    }


class StopText:
    """Holds back text that could be the start of a stop string; `feed` returns what is safe to send
    and whether a stop string was reached (the text before it is all that goes out)."""

    def __init__(self, stops: list[str]) -> None:
        self.stops, self.text, self.sent = stops, "", 0
        self.hold = max((len(s) for s in stops), default=1) - 1

    def feed(self, delta: str, final: bool = False) -> tuple[str, bool]:
        self.text += delta
        found = [i for i in (self.text.find(s, max(0, self.sent - self.hold)) for s in self.stops) if i >= 0]
        if found:
            out, self.sent = self.text[self.sent : min(found)], len(self.text)
            return out, True
        safe = len(self.text) if final else max(self.sent, len(self.text) - self.hold)
        out, self.sent = self.text[self.sent : safe], safe
        return out, False


def _prompt(model: ChatModel, body: CompletionCreate) -> tuple[Prompt, SamplingParams]:
    """The prompt and sampling of a request: a bad request (400) answers before anything is counted."""
    max_new = body.max_completion_tokens or body.max_tokens or ANSWER_RESERVE
    messages = [m.model_dump() for m in body.messages]
    try:
        prompt = fit_window(model.tokenizer, messages, prompt_limit(model.block_size, max_new))
    except MessageTooLong as exc:
        raise APIError(400, "context_length_exceeded", str(exc)) from exc
    except ValueError as exc:  # an order the chat format cannot render, e.g. a system message last
        raise APIError(400, "invalid_messages", f"The messages cannot be used: {exc}") from exc
    params = SamplingParams(
        temperature=body.temperature,
        top_k=body.top_k,
        top_p=body.top_p,
        max_new_tokens=max_new,
        seed=body.seed,
    )
    return prompt, params


async def _generate(
    model: ChatModel,
    prompt: Prompt,
    params: SamplingParams,
    stops: list[str],
    user_id: int,
    reserved: ratelimit.Taken,
) -> AsyncIterator[tuple[str, Any]]:
    """("text", delta) events, then ("finish", reason, prompt_tokens, completion_tokens); the tokens of
    the day's reservation that were not generated are given back at the end."""
    cancelled, tokens = threading.Event(), 0
    try:
        events = model.open_stream(prompt.ids, params, cancelled, user_id)  # 503 / 429 before any chunk
        streamer, stop = TextStreamer(model.tokenizer), StopText(stops)
        async for kind, value in events:
            if kind == "token":
                tokens += 1
                text, hit = stop.feed(streamer.put(value))
                if text:
                    yield "text", text
                if hit:  # a stop string: the answer ends before it
                    cancelled.set()
                    yield "finish", ("stop", len(prompt.ids), tokens)
                    return
            elif kind == "error":
                raise APIError(500, "generation_failed", str(value))
            elif kind == "done":
                text, hit = stop.feed(streamer.end(), final=True)
                if text:
                    yield "text", text
                yield "finish", ("stop" if hit else FINISH[value], len(prompt.ids), tokens)
    finally:
        cancelled.set()  # the client went away (or a stop string was reached): stop generating
        await asyncio.shield(_settle(reserved, tokens))


async def _settle(reserved: ratelimit.Taken, generated: int) -> None:
    async with get_sessionmaker()() as session, writing(session):
        await ratelimit.settle(session, reserved, generated)
        await session.commit()


def _usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


@router.post(
    "/chat/completions",
    responses={
        200: {"content": {"text/event-stream": {}, "application/json": {}}},
        **error_responses(400, 429, 503),
    },
)
async def create_completion(
    body: CompletionCreate, user: ApiUser, session: SessionDep, settings: SettingsDep, model: AdmittedModel
) -> Any:
    prompt, params = _prompt(model, body)
    # the same minute and day as /api/chat: the answer's tokens are reserved before it starts
    reserved = await ratelimit.admit_chat(session, user.id, settings, model.budget(prompt.ids, params))
    completion_id, created, name = f"chatcmpl-{uuid.uuid4().hex}", int(time.time()), model_id(model)
    events = _generate(model, prompt, params, body.stops, user.id, reserved)
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
            "usage": _usage(prompt_tokens, completion_tokens),
        }
    first = await anext(events)  # errors before the first token (400, 503) still answer as JSON
    include_usage = bool(body.stream_options and body.stream_options.include_usage)

    def chunk(delta: dict[str, Any] | None, finish_reason: str | None = None, **extra: Any) -> str:
        choices = (
            []
            if delta is None
            else [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}]
        )
        body = {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": name}
        body |= {"choices": choices, **extra}
        return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"

    async def stream() -> AsyncIterator[str]:
        yield chunk({"role": "assistant", "content": ""}, **({"usage": None} if include_usage else {}))
        event: tuple[str, Any] | None = first
        try:
            while event is not None:
                kind, value = event
                if kind == "text":
                    yield chunk({"content": value}, **({"usage": None} if include_usage else {}))
                else:
                    reason, prompt_tokens, completion_tokens = value
                    yield chunk({}, reason, **({"usage": None} if include_usage else {}))
                    if include_usage:  # OpenAI's last chunk: usage, and no choices
                        yield chunk(None, usage=_usage(prompt_tokens, completion_tokens))
                event = await anext(events, None)
        except Exception as exc:  # mid-stream: an error chunk, then the terminator clients wait for
            code = exc.code if isinstance(exc, APIError) else "generation_failed"
            error = {"code": code, "message": str(getattr(exc, "message", exc)), "type": "server_error"}
            yield f"data: {json.dumps({'error': error}, ensure_ascii=False)}\n\n"
        yield "data: [DONE]\n\n"

    return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
