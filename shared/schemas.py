"""Request and response bodies: XCreate / XUpdate for input, XPublic for output."""

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)
from pydantic.json_schema import JsonDict

from shared.security import BCRYPT_MAX_BYTES

# Python's whitespace (str.isspace, what strip() and split() remove), spelled out so that the checks here and
# the patterns documented in the OpenAPI schema (ECMA regex, whose \s is another set) mean the same.
SPACES = r"\t\n\x0b\x0c\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
# characters that print as nothing: Unicode's default-ignorable code points of the Basic Multilingual Plane
# (zero-width spaces and joiners, direction marks and overrides, the soft hyphen, variation selectors, fillers,
# the BOM): "ada\u200b@example.com" would be another account that looks like ada's. (The few above U+FFFF,
# tags and such, cannot be written in a pattern that JSON Schema's regex and Python's read alike.)
INVISIBLE = (
    r"\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u202a-\u202e\u2060-\u206f"
    r"\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff0-\ufff8"
)
_PART = f"[^@\\x00{SPACES}{INVISIBLE}]+"
EMAIL_RE = re.compile(f"^{_PART}@{_PART}\\.{_PART}$")
EMAIL_PATTERN = (
    f"^[{SPACES}]*{_PART}@{_PART}\\.{_PART}[{SPACES}]*$"  # what the API accepts: trimmed, EMAIL_RE
)
PASSWORD_MIN_CHARS = 8
TITLE_MAX = 200
# documented: a title (or a key's name) has a character that is not a space, and no NUL
NOT_BLANK: JsonDict = {"pattern": f"^[^\\x00]*[^\\x00{SPACES}][^\\x00]*$"}


def _unicode(value: str) -> str:
    """Refuses an unpaired surrogate (a JSON "\\ud800" escape without its pair): it is no Unicode text, and
    nothing can store, hash or tokenize it."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(
            "Text must be valid Unicode: it has an unpaired surrogate (\\ud800-\\udfff)"
        ) from None
    return value


def _storable(value: str) -> str:
    _unicode(value)
    if "\x00" in value:
        raise ValueError("Text must not contain the NUL character (\\u0000)")
    return value


# Text that is stored or looked up: PostgreSQL refuses NUL in text (a 500 from the database; a 422 here).
# An unpaired surrogate (which a JSON \ud800 escape can make) is not UTF-8: strict models refuse it.
STORABLE = AfterValidator(_storable)
UNICODE = AfterValidator(_unicode)  # text that is checked or tokenized but never stored (passwords, prompts)
NO_NUL = "^[^\\x00]*$"
Text = Annotated[str, Field(json_schema_extra={"pattern": NO_NUL}), STORABLE]


def _json_number(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("Input should be a number")
    return value


# Numbers in strict bodies: what JSON Schema calls a number or an integer (5.0 is an integer), never `true`
# or "5", which pydantic's lax mode would read as 1 and 5. (In an `X | None`, put the limits in the Field
# before JSON_NUMBER, or the schema shows them as unknown keywords.)
JSON_NUMBER = BeforeValidator(_json_number)
JsonInt = Annotated[int, Field(strict=False), JSON_NUMBER]
JsonFloat = Annotated[float, Field(strict=False), JSON_NUMBER]


class Input(BaseModel):
    # strict: JSON `true` is not the number 1 and 5 is not the string "5"; what the schema says is what passes
    model_config = ConfigDict(extra="forbid", strict=True)


class Output(BaseModel):
    model_config = ConfigDict(from_attributes=True)


EMAIL_MAX = 320


def _normalised_email(value: str) -> str:
    """Trimmed and lowercased, then measured: lowercasing can lengthen ("İ" becomes two characters)."""
    value = value.strip().lower()
    if len(value) > EMAIL_MAX:
        raise ValueError(f"An email address has at most {EMAIL_MAX} characters")
    return value


def _email(value: str) -> str:
    value = _normalised_email(value)
    if hidden := re.search(f"[{INVISIBLE}]", value):
        raise ValueError(
            f"An email address must not contain invisible characters (U+{ord(hidden.group()):04X} here)"
        )
    if not EMAIL_RE.match(value):
        raise ValueError("Enter a valid email address, like name@example.com")
    return value


class UserCreate(Input):
    # The schema documents what is accepted. A password is at least 8 characters and at most 72 UTF-8 bytes
    # (bcrypt's limit); JSON Schema can only count characters, so it states 72 characters as the maximum.
    email: Annotated[str, STORABLE] = Field(
        max_length=EMAIL_MAX, examples=["ada@example.com"], json_schema_extra={"pattern": EMAIL_PATTERN}
    )
    password: Annotated[str, UNICODE] = Field(
        max_length=1024,
        description="at least 8 characters, at most 72 bytes (UTF-8), no NUL",
        json_schema_extra={"minLength": PASSWORD_MIN_CHARS, "maxLength": BCRYPT_MAX_BYTES, "pattern": NO_NUL},
    )

    _check_email = field_validator("email")(_email)

    @field_validator("password")
    @classmethod
    def _password_length(cls, value: str) -> str:
        if len(value) < PASSWORD_MIN_CHARS:  # characters, as the message and the schema say
            raise ValueError(f"Password must be at least {PASSWORD_MIN_CHARS} characters")
        if "\x00" in value:  # bcrypt stops at the first NUL: "pw\0anything" would be "pw"
            raise ValueError("Password must not contain the NUL character (\\u0000)")
        size = len(value.encode())
        if size > BCRYPT_MAX_BYTES:
            raise ValueError(
                f"Password is {size} bytes; the limit is {BCRYPT_MAX_BYTES} bytes (UTF-8). "
                "Use a shorter one: it is never silently cut"
            )
        return value


class UserLogin(Input):
    email: Annotated[str, STORABLE] = Field(
        min_length=1, max_length=EMAIL_MAX, json_schema_extra={"pattern": NO_NUL}
    )
    password: Annotated[str, UNICODE] = Field(min_length=1, max_length=1024)

    _normalise = field_validator("email")(_normalised_email)


class PasswordChange(Input):
    current_password: Annotated[str, UNICODE] = Field(min_length=1, max_length=1024)
    new_password: Annotated[str, UNICODE] = Field(
        max_length=1024,
        description="at least 8 characters, at most 72 bytes (UTF-8), no NUL",
        json_schema_extra={"minLength": PASSWORD_MIN_CHARS, "maxLength": BCRYPT_MAX_BYTES, "pattern": NO_NUL},
    )

    @field_validator("new_password")
    @classmethod
    def _new_password_length(cls, value: str) -> str:
        return UserCreate._password_length(value)


class AccountDelete(Input):
    password: Annotated[str, UNICODE] = Field(
        min_length=1, max_length=1024, description="the account's password, to confirm"
    )


class ApiKeyCreate(Input):
    name: Annotated[str, STORABLE] = Field(max_length=100, json_schema_extra=NOT_BLANK)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        value = " ".join(value.split())
        if not value:
            raise ValueError("Name must not be empty")
        return value


class ApiKeyPublic(Output):
    id: int
    name: str
    created_at: datetime


class ApiKeyCreated(ApiKeyPublic):
    key: str = Field(description="the key itself: shown only now, stored only as its hash")


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


# the length checked on the string itself: pydantic words it for a string then ("at most 200 characters");
# on `str | None` it read "at most 200 items after validation"
Title = Annotated[str, Field(max_length=TITLE_MAX, json_schema_extra=NOT_BLANK), STORABLE]


class ConversationCreate(Input):
    title: Title | None = None

    _check_title = field_validator("title")(_title)


MessageId = Annotated[int, Field(strict=False, ge=1, le=2_147_483_647), JSON_NUMBER]


class ConversationUpdate(Input):
    # the validator's rule, stated in the schema too: a title, a current_message_id, or both
    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "anyOf": [
                {"required": ["title"], "properties": {"title": {"type": "string"}}},
                {
                    "required": ["current_message_id"],
                    "properties": {"current_message_id": {"type": "integer"}},
                },
            ]
        },
    )

    title: Title | None = None
    current_message_id: MessageId | None = Field(
        default=None, description="switch branch: the active branch becomes root → this message → its newest"
    )

    _check_title = field_validator("title")(_title)

    @model_validator(mode="after")
    def _something(self) -> "ConversationUpdate":
        if self.title is None and self.current_message_id is None:
            raise ValueError("give a title and/or a current_message_id")
        return self


class ConversationPublic(Output):
    id: int
    title: str
    created_at: datetime
    updated_at: datetime


class MessagePublic(Output):
    id: int
    role: Literal["user", "assistant"]
    content: str
    parent_id: int | None
    finish_reason: str | None = Field(description="an answer: null while it is generated")
    token_count: int | None
    created_at: datetime
    sibling_ids: list[int] = Field(
        description="every message with the same parent, oldest first, itself included"
    )


class ContextPublic(BaseModel):
    tokens: int = Field(description="the last answer's prompt, in tokens")
    limit: int = Field(description="the model's context window in tokens")
    window: int = Field(description="the same as limit (the name it had first)")
    budget: int = Field(description="tokens a prompt may take (the window less the room kept for the answer)")
    dropped_messages: int = Field(description="the oldest messages of the branch the model no longer sees")


class ConversationDetail(ConversationPublic):
    current_message_id: int | None
    messages: list[MessagePublic] = Field(description="the active branch, root first")
    context: ContextPublic | None = Field(
        description="the last answer's prompt as its stream's meta said; null before any answer"
    )


class StopPublic(BaseModel):
    conversation_id: int
    stop_requested: bool


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
