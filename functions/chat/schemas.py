"""Bodies of the chat routes. The limits live here, so out-of-range input is a 422 before anything streams."""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from functions.chat.context import ANSWER_RESERVE

BLOCK_SIZE = 384  # the model's context window (checked against the checkpoint at load)
MAX_MESSAGE_CHARS = 4000


class Sampling(BaseModel):
    temperature: float = Field(default=0.8, ge=0, le=2, description="0 = greedy")
    top_p: float = Field(default=0.95, gt=0, le=1)
    top_k: int = Field(default=50, ge=0, le=200, description="0 = off")
    max_new_tokens: int = Field(default=ANSWER_RESERVE, ge=1, le=BLOCK_SIZE - 1)
    seed: int | None = Field(default=None, ge=0, le=2**63 - 1)


class ChatCreate(Sampling):
    model_config = ConfigDict(extra="forbid")

    conversation_id: int | None = Field(
        default=None, ge=1, le=2_147_483_647, description="null starts a new one"
    )
    message: str = Field(min_length=1, max_length=MAX_MESSAGE_CHARS)


class StopPublic(BaseModel):
    conversation_id: int
    stop_requested: bool


class OpenAIMessage(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str = Field(max_length=MAX_MESSAGE_CHARS * 4)


class CompletionCreate(BaseModel):
    """OpenAI's chat.completions request; fields SLM has no use for are accepted and ignored."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(max_length=200)
    messages: list[OpenAIMessage] = Field(min_length=1, max_length=200)
    stream: bool = False
    temperature: float = Field(default=0.8, ge=0, le=2)
    top_p: float = Field(default=0.95, gt=0, le=1)
    max_tokens: int | None = Field(default=None, ge=1, le=BLOCK_SIZE - 1)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=BLOCK_SIZE - 1)
    seed: int | None = Field(default=None, ge=0, le=2**63 - 1)
    n: int = Field(default=1, ge=1, le=1, description="SLM returns one choice")
