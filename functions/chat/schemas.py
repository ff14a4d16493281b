"""Bodies of the chat routes. The limits live here, so out-of-range input is a 422 before anything streams."""

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from model.tokenizer import ANSWER_RESERVE
from shared.schemas import JSON_NUMBER, JsonFloat, JsonInt, Text

BLOCK_SIZE = 384  # the model's context window (checked against the checkpoint at load)
MAX_MESSAGE_CHARS = 4000


class Sampling(BaseModel):
    model_config = ConfigDict(strict=True)  # `"seed": false` is refused, not read as 0 (found by fuzzing)

    temperature: JsonFloat = Field(default=0.8, ge=0, le=2, description="0 = greedy")
    top_p: JsonFloat = Field(default=0.95, gt=0, le=1)
    top_k: JsonInt = Field(default=50, ge=0, le=200, description="0 = off")
    max_new_tokens: JsonInt = Field(default=ANSWER_RESERVE, ge=1, le=BLOCK_SIZE - 1)
    seed: Annotated[int, Field(strict=False, ge=0, le=2**63 - 1), JSON_NUMBER] | None = None


class ChatCreate(Sampling):
    model_config = ConfigDict(extra="forbid", strict=True)

    conversation_id: Annotated[int, Field(strict=False, ge=1, le=2_147_483_647), JSON_NUMBER] | None = Field(
        default=None, description="null starts a new one"
    )
    message: Text = Field(min_length=1, max_length=MAX_MESSAGE_CHARS)


class StopPublic(BaseModel):
    conversation_id: int
    stop_requested: bool


class OpenAIMessage(BaseModel):
    model_config = ConfigDict(strict=True)

    role: Literal["system", "user", "assistant"]
    content: str = Field(max_length=MAX_MESSAGE_CHARS * 4)


class CompletionCreate(BaseModel):
    """OpenAI's chat.completions request; fields SLM has no use for are accepted and ignored."""

    model_config = ConfigDict(extra="allow", strict=True)

    model: str = Field(max_length=200)
    messages: list[OpenAIMessage] = Field(min_length=1, max_length=200)
    stream: bool = False
    temperature: JsonFloat = Field(default=0.8, ge=0, le=2)
    top_p: JsonFloat = Field(default=0.95, gt=0, le=1)
    max_tokens: Annotated[int, Field(strict=False, ge=1, le=BLOCK_SIZE - 1), JSON_NUMBER] | None = None
    max_completion_tokens: (
        Annotated[int, Field(strict=False, ge=1, le=BLOCK_SIZE - 1), JSON_NUMBER] | None
    ) = None
    seed: Annotated[int, Field(strict=False, ge=0, le=2**63 - 1), JSON_NUMBER] | None = None
    n: JsonInt = Field(default=1, ge=1, le=1, description="SLM returns one choice")
