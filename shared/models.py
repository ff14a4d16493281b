"""ORM models: users, conversations, messages, API keys, and the counters that rate-limit what costs.

Ids never repeat: SQLite's AUTOINCREMENT on every table (without it SQLite hands a deleted row's id to the
next insert, and a late save keyed by that id lands in someone else's row); PostgreSQL's sequences never
go back."""

import secrets
from datetime import UTC, datetime

from sqlalchemy import JSON, BigInteger, DateTime, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    pass


NEVER_REUSED = {"sqlite_autoincrement": True}


def new_subject() -> str:
    """A user's token subject: 128 random bits, never derived from the id."""
    return secrets.token_hex(16)


class User(Base):
    __tablename__ = "users"
    __table_args__ = NEVER_REUSED

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # what an access token names ("sub"): random, so a token can never name a later user, whatever ids do
    subject: Mapped[str] = mapped_column(String(32), unique=True, index=True, default=new_subject)
    email: Mapped[str] = mapped_column(String(320), unique=True, index=True)
    password_hash: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # in every token ("ver"); a password change or "log out everywhere" raises it, refusing older tokens
    token_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    conversations: Mapped[list["Conversation"]] = relationship(
        back_populates="user", cascade="all, delete-orphan", passive_deletes=True
    )
    api_keys: Mapped[list["ApiKey"]] = relationship(cascade="all, delete-orphan", passive_deletes=True)


class Conversation(Base):
    __tablename__ = "conversations"
    __table_args__ = (Index("ix_conversations_user_updated", "user_id", "updated_at"), NEVER_REUSED)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    title: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
    # Set by POST /api/conversations/{id}/stop; the generator polls it, so a stop works across processes.
    stop_requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    # The end of the active branch (null: no message yet); no foreign key, so a conversation and its
    # messages never reference each other in a cycle (deleting either stays a plain cascade).
    current_message_id: Mapped[int | None] = mapped_column(Integer, default=None)

    user: Mapped[User] = relationship(back_populates="conversations")
    messages: Mapped[list["Message"]] = relationship(
        back_populates="conversation",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="Message.id",
    )


class Message(Base):
    __tablename__ = "messages"
    __table_args__ = NEVER_REUSED

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    conversation_id: Mapped[int] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE"), index=True
    )
    # the message this one follows (null: the conversation's first); regenerate and edit add siblings
    parent_id: Mapped[int | None] = mapped_column(
        ForeignKey("messages.id", ondelete="CASCADE", name="fk_messages_parent_id_messages"),
        index=True,
        default=None,
    )
    role: Mapped[str] = mapped_column(String(16))  # "user" | "assistant"
    content: Mapped[str] = mapped_column(Text)
    # an answer: null while it is generated, then eos | length | stopped | error (a failure,
    # its process's death included)
    finish_reason: Mapped[str | None] = mapped_column(String(16), default=None)
    token_count: Mapped[int | None] = mapped_column(Integer, default=None)
    # an answer: the prompt it was generated from, as the stream's meta.context said it
    # ({"tokens", "limit", "window", "budget", "dropped_messages"}), so the context divider survives a reload
    context: Mapped[dict[str, int] | None] = mapped_column(JSON, default=None)
    # an answer: its generated token ids, space-separated (the events route replays from them)
    token_ids: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # the last save: an answer in progress that stops moving is finalized as "error"
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

    conversation: Mapped[Conversation] = relationship(back_populates="messages")


class ApiKey(Base):
    """A key for /v1 (OpenAI clients): `slm-` + 32 random bytes, shown once, stored as its SHA-256."""

    __tablename__ = "api_keys"
    __table_args__ = NEVER_REUSED

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class RateLimitBucket(Base):
    """A fixed-window counter ("login:ip:1.2.3.4", "login:account:a@b.c") shared by every process."""

    __tablename__ = "rate_limit_buckets"

    key: Mapped[str] = mapped_column(String(400), primary_key=True)
    window_start: Mapped[int] = mapped_column(BigInteger)  # unix seconds
    count: Mapped[int] = mapped_column(Integer, default=0)
    # unix seconds when the window ends: past it the row counts nothing and is purged (ratelimit.purge)
    # (server_default: see migration 0005, for code from before it that writes no expires_at)
    expires_at: Mapped[int] = mapped_column(BigInteger, index=True, server_default="4102444800")
