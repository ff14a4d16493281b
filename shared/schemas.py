"""Request and response bodies: XCreate / XUpdate for input, XPublic for output."""

import re
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shared.security import BCRYPT_MAX_BYTES

EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
PASSWORD_MIN_BYTES = 8
TITLE_MAX = 200


class Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Output(BaseModel):
    model_config = ConfigDict(from_attributes=True)


def _email(value: str) -> str:
    value = value.strip().lower()
    if not EMAIL_RE.match(value):
        raise ValueError("Enter a valid email address, like name@example.com")
    return value


class UserCreate(Input):
    email: str = Field(max_length=320, examples=["ada@example.com"])
    password: str = Field(max_length=1024, description="8 to 72 bytes (UTF-8)")

    _check_email = field_validator("email")(_email)

    @field_validator("password")
    @classmethod
    def _password_length(cls, value: str) -> str:
        size = len(value.encode())
        if size < PASSWORD_MIN_BYTES:
            raise ValueError(f"Password must be at least {PASSWORD_MIN_BYTES} characters")
        if size > BCRYPT_MAX_BYTES:
            raise ValueError(
                f"Password is {size} bytes; the limit is {BCRYPT_MAX_BYTES} bytes (UTF-8). "
                "Use a shorter one: it is never silently cut"
            )
        return value


class UserLogin(Input):
    email: str = Field(min_length=1, max_length=320)
    password: str = Field(min_length=1, max_length=1024)

    @field_validator("email")
    @classmethod
    def _normalise(cls, value: str) -> str:
        return value.strip().lower()


class UserPublic(Output):
    id: int
    email: str
    created_at: datetime


class TokenPublic(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int = Field(description="seconds until the token expires")
    user: UserPublic


def _title(value: str | None) -> str | None:
    if value is None:
        return None
    value = " ".join(value.split())
    if not value:
        raise ValueError("Title must not be empty")
    return value


class ConversationCreate(Input):
    title: str | None = Field(default=None, max_length=TITLE_MAX)

    _check_title = field_validator("title")(_title)


class ConversationUpdate(Input):
    title: str = Field(max_length=TITLE_MAX)

    _check_title = field_validator("title")(_title)


class ConversationPublic(Output):
    id: int
    title: str
    created_at: datetime
    updated_at: datetime


class MessagePublic(Output):
    id: int
    role: Literal["user", "assistant"]
    content: str
    finish_reason: str | None
    token_count: int | None
    created_at: datetime


class ConversationDetail(ConversationPublic):
    messages: list[MessagePublic]


class ConversationsPublic(BaseModel):
    items: list[ConversationPublic]
    total: int
    limit: int
    offset: int


class ErrorDetail(BaseModel):
    code: str
    message: str
    fields: dict[str, str] | None = None


class ErrorPublic(BaseModel):
    error: ErrorDetail
