"""OpenAI-compatible API (GET /v1/models, POST /v1/chat/completions), authenticated with an API key
(`slm-...`, from /api/auth/keys) or the bearer JWT, so existing chat UIs and SDKs can talk to SLM.
Stateless: nothing here is saved to a conversation."""

import asyncio
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Path
from fastapi.responses import StreamingResponse

from functions.chat import arrivals, metrics, rows
from functions.chat.events import Done, Failed, Queued, Started, Token
from functions.chat.schemas import CompletionCreate, sampling_params
from functions.chat.service import AdmittedModel, ChatModel, LoadedModel
from model.sampling import SamplingParams
from model.tokenizer import Prompt, PromptTooLong, TextStreamer, fit_prompt
from shared import ratelimit
from shared.deps import ApiUser, SessionDep, SettingsDep
from shared.errors import APIError, error_responses, not_found

router = APIRouter(prefix="/v1", tags=["openai"], responses=error_responses(401))
FINISH = {"eos": "stop", "length": "length", "stopped": "stop"}


def model_id(model: ChatModel) -> str:
    return str(model.config.get("name") or "slm")


def model_entry(model: ChatModel) -> dict[str, Any]:
    return {"id": model_id(model), "object": "model", "created": 0, "owned_by": "slm"}


@router.get("/models")
async def list_models(user: ApiUser, model: LoadedModel) -> dict[str, Any]:
    return {"object": "list", "data": [model_entry(model)]}


@router.get("/models/{model_name}", responses=error_responses(404))
async def read_model_entry(
    model_name: Annotated[str, Path(max_length=200)], user: ApiUser, model: LoadedModel
) -> dict[str, Any]:
    """One model, as `client.models.retrieve(...)` asks for it: the served model's id, else a 404."""
    if model_name != model_id(model):
        raise not_found("Model")
    return model_entry(model)


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
    params = sampling_params(body)
    messages = [m.turn() for m in body.messages]
    try:
        prompt = fit_prompt(model.tokenizer, messages, model.block_size, params.max_new_tokens)
    except PromptTooLong as exc:
        raise APIError(400, "context_length_exceeded", str(exc)) from exc
    except ValueError as exc:  # an order the chat format cannot render, e.g. a system message last
        raise APIError(400, "invalid_messages", f"The messages cannot be used: {exc}") from exc
    return prompt, params


async def _generate(
    model: ChatModel,
    prompt: Prompt,
    params: SamplingParams,
    stops: list[str],
    user_id: int,
    reserved: ratelimit.Taken,
    arrived: float,
) -> AsyncIterator[tuple[str, Any]]:
    """("text", delta) events, then ("finish", reason, prompt_tokens, completion_tokens); the tokens of
    the day's reservation that were not generated are given back at the end."""
    cancelled, tokens, clock = threading.Event(), 0, metrics.TokenClock(arrived)
    try:
        events = model.open_stream(prompt.ids, params, cancelled, user_id)  # 503 / 429 before any chunk
        arrivals.arrived()  # queued: the scheduler's decode steps need not wait for this request any more
        streamer, stop = TextStreamer(model.tokenizer), StopText(stops)
        async for event in events:
            match event:
                case Token(token, at):
                    clock.token(at)
                    tokens += 1
                    text, hit = stop.feed(streamer.put(token))
                    if text:
                        yield "text", text
                    if hit:  # a stop string: the answer ends before it
                        cancelled.set()
                        yield "finish", ("stop", len(prompt.ids), tokens)
                        return
                case Failed(message):
                    raise APIError(500, "generation_failed", message)
                case Done(reason):
                    text, hit = stop.feed(streamer.end(), final=True)
                    if text:
                        yield "text", text
                    yield "finish", ("stop" if hit else FINISH[reason], len(prompt.ids), tokens)
                case Queued() | Started():
                    pass
    finally:
        cancelled.set()  # the client went away (or a stop string was reached): stop generating
        await asyncio.shield(rows.settle(reserved, tokens))


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
    arrived = time.perf_counter()
    prompt, params = _prompt(model, body)
    # the same minute and day as /api/chat: the answer's tokens are reserved before it starts
    reserved = await ratelimit.admit_chat(session, user.id, settings, model.budget(prompt.ids, params))
    head = {"id": f"chatcmpl-{uuid.uuid4().hex}", "created": int(time.time()), "model": model_id(model)}
    events = _generate(model, prompt, params, body.stops, user.id, reserved, arrived)
    if not body.stream:
        return await _completion(head, events)
    first = await anext(events)  # errors before the first token (400, 503) still answer as JSON
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    chunks = _chunks(head, first, events, include_usage)
    return StreamingResponse(chunks, media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


async def _completion(head: dict[str, Any], events: AsyncIterator[tuple[str, Any]]) -> dict[str, Any]:
    """The whole answer as one chat.completion."""
    parts, finish = [], ("stop", 0, 0)
    async for kind, value in events:
        if kind == "text":
            parts.append(value)
        else:
            finish = value
    reason, prompt_tokens, completion_tokens = finish
    message = {"role": "assistant", "content": "".join(parts)}
    return {
        **head,
        "object": "chat.completion",
        "choices": [{"index": 0, "message": message, "finish_reason": reason, "logprobs": None}],
        "usage": _usage(prompt_tokens, completion_tokens),
    }


async def _chunks(
    head: dict[str, Any], first: tuple[str, Any], events: AsyncIterator[tuple[str, Any]], include_usage: bool
) -> AsyncIterator[str]:
    """The answer as chat.completion.chunk events, then `[DONE]`; an error midway is an error chunk."""
    usage = {"usage": None} if include_usage else {}

    def chunk(delta: dict[str, Any] | None, finish_reason: str | None = None, **extra: Any) -> str:
        choices = (
            []
            if delta is None
            else [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}]
        )
        body = {**head, "object": "chat.completion.chunk", "choices": choices, **extra}
        return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"

    yield chunk({"role": "assistant", "content": ""}, **usage)
    event: tuple[str, Any] | None = first
    try:
        while event is not None:
            kind, value = event
            if kind == "text":
                yield chunk({"content": value}, **usage)
            else:
                reason, prompt_tokens, completion_tokens = value
                yield chunk({}, reason, **usage)
                if include_usage:  # OpenAI's last chunk: usage, and no choices
                    yield chunk(None, usage=_usage(prompt_tokens, completion_tokens))
            event = await anext(events, None)
    except Exception as exc:  # mid-stream: an error chunk, then the terminator clients wait for
        code = exc.code if isinstance(exc, APIError) else "generation_failed"
        error = {"code": code, "message": str(getattr(exc, "message", exc)), "type": "server_error"}
        yield f"data: {json.dumps({'error': error}, ensure_ascii=False)}\n\n"
    yield "data: [DONE]\n\n"
