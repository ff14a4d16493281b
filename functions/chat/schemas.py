"""Bodies of the chat routes. The limits live here, so out-of-range input is a 422 before anything streams."""

from typing import Annotated, Any, Literal, cast

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    model_validator,
)
from pydantic.json_schema import JsonDict

from model.sampling import SamplingParams
from model.tokenizer import ANSWER_RESERVE
from shared.schemas import (
    JSON_NUMBER,
    NOT_BLANK,
    STORABLE,
    UNICODE,
    JsonFloat,
    JsonInt,
    MessageId,
)
from shared.settings import get_settings

# The largest context window a served model may have: the bounds of the request bodies below, which the
# OpenAPI schema states before any model is loaded. The model's own window comes from its checkpoint;
# ChatModel refuses to load one larger than this, and answers are kept within a smaller one.
MAX_WINDOW = 384
# the largest seed: 2**53 - 1, the last integer a JSON number (an IEEE double) holds exactly, so a schema
# validator that compares as floats and the server, which compares as integers, agree at the bound
MAX_SEED = 2**53 - 1
MAX_MESSAGE_CHARS = 4000


def _not_blank(value: str) -> str:
    """Refuses a message of spaces alone: nothing to answer, and a conversation titled with nothing. Kept as
    typed otherwise (the spaces inside and around it are the user's)."""
    if not value.strip():
        raise ValueError("Message must not be empty: it has no character that is not a space")
    return value


# the limits checked on the string before the validators after it: pydantic words them for a string then
# ("at most 4000 characters"); on `Text | None` they read "at most 4000 items after validation"
UserText = Annotated[
    str,
    Field(min_length=1, max_length=MAX_MESSAGE_CHARS, json_schema_extra=NOT_BLANK),
    STORABLE,
    AfterValidator(_not_blank),
]


class Sampling(BaseModel):
    model_config = ConfigDict(strict=True)  # `"seed": false` is refused, not read as 0 (found by fuzzing)

    temperature: JsonFloat = Field(default=0.8, ge=0, le=2, description="0 = greedy")
    top_p: JsonFloat = Field(default=0.95, gt=0, le=1)
    top_k: JsonInt = Field(default=50, ge=0, le=200, description="0 = off")
    max_new_tokens: JsonInt = Field(default=ANSWER_RESERVE, ge=1, le=MAX_WINDOW - 1)
    min_new_tokens: JsonInt = Field(
        default=0, ge=0, le=MAX_WINDOW - 1, description="<|eos|> is not sampled before this many tokens"
    )
    seed: Annotated[int, Field(strict=False, ge=0, le=MAX_SEED), JSON_NUMBER] | None = None

    @model_validator(mode="after")
    def _min_within_max(self) -> "Sampling":
        if self.min_new_tokens > self.max_new_tokens:
            raise ValueError("min_new_tokens must not exceed max_new_tokens")
        return self


# what the validator below checks, stated in the schema too: a message, or a regenerate (with its conversation)
ONE_OF: JsonDict = {
    "oneOf": [
        {
            "required": ["message"],
            "properties": {"message": {"type": "string"}},
            "not": {"required": ["regenerate"]},
        },
        {
            "required": ["regenerate", "conversation_id"],
            "properties": {"regenerate": {"type": "integer"}, "conversation_id": {"type": "integer"}},
            "not": {"anyOf": [{"required": ["message"]}, {"required": ["parent_id"]}]},
        },
    ]
}


class ChatCreate(Sampling):
    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra=ONE_OF)

    conversation_id: Annotated[int, Field(strict=False, ge=1, le=2_147_483_647), JSON_NUMBER] | None = Field(
        default=None, description="null starts a new one"
    )
    message: UserText | None = Field(default=None, description="the new user message")
    parent_id: MessageId | None = Field(
        default=None,
        description="the message the new one follows; left out: the end of the active branch; null: the "
        "conversation starts again (editing message M is sending the new text with M's parent_id)",
    )
    regenerate: MessageId | None = Field(
        default=None,
        description="instead of a message: another answer to the question this answer replied to",
    )

    @model_validator(mode="after")
    def _message_or_regenerate(self) -> "ChatCreate":
        sent = self.model_fields_set
        if ("message" in sent) == ("regenerate" in sent) or (
            self.message is None and self.regenerate is None
        ):
            raise ValueError("give either a message or regenerate (an assistant message's id)")
        if "regenerate" in sent and (self.conversation_id is None or "parent_id" in sent):
            raise ValueError("regenerate needs the conversation_id and takes no parent_id")
        return self

    @property
    def follows(self) -> tuple[bool, int | None]:
        """(given, parent_id): whether parent_id was sent (null included), and its value."""
        return "parent_id" in self.model_fields_set, self.parent_id


OPENAI_CONTENT_CHARS = MAX_MESSAGE_CHARS * 4


def _text_part_schema(schema: JsonDict) -> None:
    properties = cast(JsonDict, schema["properties"])
    properties["type"] = {"const": "text", "type": "string"}
    properties["text"] = {"type": "string", "maxLength": OPENAI_CONTENT_CHARS}
    schema["required"] = ["type", "text"]


class ContentPart(BaseModel):
    """One part of a message's content in OpenAI's array form (`[{"type": "text", "text": "..."}]`, which
    the official SDKs, LangChain and many chat UIs send). SLM reads text: any other part (an image, audio,
    a file) is refused by name rather than dropped, so nobody believes the model saw it."""

    # the schema states what is accepted, a text part (the validator below words the refusal of the rest)
    model_config = ConfigDict(extra="allow", strict=True, json_schema_extra=_text_part_schema)

    type: Annotated[str, UNICODE] = Field(max_length=100)
    text: Annotated[str, Field(max_length=OPENAI_CONTENT_CHARS), UNICODE] | None = None

    @model_validator(mode="after")
    def _text_only(self) -> "ContentPart":
        if self.type != "text":
            raise ValueError(f"SLM reads text only: a content part of type {self.type!r} cannot be used")
        if self.text is None:
            raise ValueError("a content part of type 'text' needs its text")
        return self


def _content_kind(value: Any) -> str | None:
    return "text" if isinstance(value, str) else "parts" if isinstance(value, list) else None


# a string, or a list of parts: told apart by the value's type, so that an error names the one form sent
Content = Annotated[
    Annotated[Annotated[str, Field(max_length=OPENAI_CONTENT_CHARS), UNICODE], Tag("text")]
    | Annotated[Annotated[list[ContentPart], Field(min_length=1, max_length=100)], Tag("parts")],
    Discriminator(
        _content_kind,
        custom_error_type="content_type",
        custom_error_message="content must be a string or a list of content parts",
    ),
]


class OpenAIMessage(BaseModel):
    model_config = ConfigDict(strict=True)

    # "developer" is what OpenAI's newer clients send in place of "system": read as the system message
    role: Literal["system", "developer", "user", "assistant"]
    content: Content

    @property
    def text(self) -> str:
        """The content as one string: the text parts joined by newlines, as other OpenAI-compatible
        servers join them."""
        if isinstance(self.content, str):
            return self.content
        return "\n".join(part.text or "" for part in self.content)

    def turn(self) -> dict[str, str]:
        """The message as the chat format takes it (model.tokenizer.fit_prompt)."""
        return {"role": "system" if self.role == "developer" else self.role, "content": self.text}


Stop = Annotated[str, Field(min_length=1, max_length=100), UNICODE]
# a string or a list of strings, told apart by the value's type (an error then names the form sent)
StopField = (
    Annotated[
        Annotated[Stop, Tag("string")] | Annotated[Annotated[list[Stop], Field(max_length=4)], Tag("list")],
        Discriminator(
            lambda value: "string" if isinstance(value, str) else "list" if isinstance(value, list) else None,
            custom_error_type="stop_type",
            custom_error_message="stop must be a string or a list of up to 4 strings",
        ),
    ]
    | None
)


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    include_usage: bool = Field(default=False, description="a last chunk with usage, and no choices")


def _or_null(schema: JsonDict) -> None:
    """A field's schema that also takes null (CompletionCreate reads null as the field's default)."""
    kept = {key: schema.pop(key) for key in ("default", "title", "description") if key in schema}
    one = dict(schema)
    schema.clear()
    schema.update(anyOf=[one, {"type": "null"}], **kept)


# The answer's length in tokens: any positive number a client sends (many send 1024 or 4096 whatever the
# model), the answer kept within the model's window as it is anyway (sampling_params)
MaxTokens = Annotated[int, Field(strict=False, ge=1, le=2**31 - 1), JSON_NUMBER] | None
# the fields OpenAI's clients may send as null (openai-python sends `temperature=None` as null): the default
NULL_IS_DEFAULT = ("stream", "temperature", "top_p", "n", "top_k")


def _no_forced_tool(value: Any) -> Any:
    if value == "required" or isinstance(value, dict):
        raise ValueError("SLM cannot call tools: it answers in text (send tool_choice 'auto' or 'none')")
    return value


class ResponseFormat(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    type: Literal["text"]


def _text_format(value: Any) -> Any:
    if isinstance(value, dict) and value.get("type") in ("json_object", "json_schema"):
        raise ValueError(f"SLM cannot promise {value['type']} output: it answers in free text")
    return value


def _no_logprobs(value: Any) -> Any:
    if value is True:
        raise ValueError("SLM does not return log probabilities")
    return value


class CompletionCreate(BaseModel):
    """OpenAI's chat.completions request; fields SLM has no use for are accepted and ignored."""

    model_config = ConfigDict(extra="allow", strict=True)

    model: Annotated[str, UNICODE] = Field(max_length=200)
    # a long chat's whole history (OpenAI-compatible UIs resend it every time): the prompt keeps the newest
    # turns that fit, counted from the newest back (model.tokenizer.fit_prompt)
    messages: list[OpenAIMessage] = Field(min_length=1, max_length=10_000)
    stream: bool = Field(default=False, json_schema_extra=_or_null)
    temperature: JsonFloat = Field(default=0.8, ge=0, le=2, json_schema_extra=_or_null)
    top_p: JsonFloat = Field(default=0.95, gt=0, le=1, json_schema_extra=_or_null)
    max_tokens: MaxTokens = None
    max_completion_tokens: MaxTokens = None
    seed: Annotated[int, Field(strict=False, ge=0, le=MAX_SEED), JSON_NUMBER] | None = None
    n: JsonInt = Field(
        default=1, ge=1, le=1, description="SLM returns one choice", json_schema_extra=_or_null
    )
    top_k: JsonInt = Field(
        default=0,
        ge=0,
        le=200,
        description="not OpenAI's, but sent by many clients; 0 = off",
        json_schema_extra=_or_null,
    )
    stop: StopField = Field(
        default=None, description="up to 4 strings; the answer ends before the first of them"
    )
    stream_options: StreamOptions | None = None
    # what SLM cannot honour is refused by name, not ignored: a client that asked for a tool call, JSON or
    # log probabilities would otherwise take plain text for what it asked for (tools alone are accepted:
    # with tool_choice "auto" a model may answer in text, as SLM always does)
    tool_choice: Annotated[Literal["none", "auto"], BeforeValidator(_no_forced_tool)] | None = None
    response_format: Annotated[ResponseFormat, BeforeValidator(_text_format)] | None = None
    logprobs: Annotated[Literal[False], BeforeValidator(_no_logprobs)] | None = None

    @model_validator(mode="before")
    @classmethod
    def _null_is_default(cls, data: Any) -> Any:
        if isinstance(data, dict) and any(data.get(name, 0) is None for name in NULL_IS_DEFAULT):
            return {k: v for k, v in data.items() if not (k in NULL_IS_DEFAULT and v is None)}
        return data

    @property
    def stops(self) -> list[str]:
        return [self.stop] if isinstance(self.stop, str) else list(self.stop or [])


def sampling_params(body: Sampling | CompletionCreate) -> SamplingParams:
    """The one conversion of a request body into SamplingParams, for /api/chat and /v1 alike."""
    if isinstance(body, CompletionCreate):
        asked = body.max_completion_tokens or body.max_tokens or ANSWER_RESERVE
        max_new, min_new = min(asked, MAX_WINDOW - 1), 0
    else:
        max_new, min_new = body.max_new_tokens, body.min_new_tokens
    return SamplingParams(
        temperature=body.temperature,
        top_p=body.top_p,
        top_k=body.top_k,
        max_new_tokens=max_new,
        min_new_tokens=min_new,
        seed=body.seed,
        no_repeat_ngram=get_settings().chat_loop_guard_words,
    )


def sampling_bounds(window: int) -> dict[str, dict[str, float | int | bool | None]]:
    """{field: {default, minimum, maximum}} of the sampling fields for a model with this window, from the
    schema itself (the browser's settings panel reads them from /api/model instead of keeping copies)."""
    properties = Sampling.model_json_schema()["properties"]
    bounds: dict[str, dict[str, float | int | bool | None]] = {}
    for name in ("temperature", "top_p", "top_k", "max_new_tokens", "min_new_tokens"):
        schema = properties[name]
        bounds[name] = {
            "default": schema.get("default"),
            "minimum": schema.get("minimum", schema.get("exclusiveMinimum")),
            "maximum": schema.get("maximum"),
            "exclusive_minimum": "exclusiveMinimum" in schema,
        }
    for name in ("max_new_tokens", "min_new_tokens"):
        bounds[name]["maximum"] = min(int(bounds[name]["maximum"] or window), window - 1)
    return bounds
