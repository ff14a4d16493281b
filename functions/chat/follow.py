"""Following an answer from the database (GET /api/chat/{conversation_id}/events), from any process.

Followers hold no database connection while they wait. One reader per event loop (`Followers`) reads
every followed answer in one short query each FOLLOW_POLL_SECONDS and wakes the followers of the answers
that changed: a hundred open tabs cost one query per poll, not a hundred pinned connections (each of
which used to hold one pooled connection for its whole stream and take a second per poll, so sixteen
tabs stalled every request of the process). Each user has chat_max_followers_per_user open followers
per process; past that, 429.
"""

import asyncio
import logging
import weakref
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from functions.chat import rows
from functions.chat.outbox import PerLoop
from functions.chat.sse import sse
from model.tokenizer import TextStreamer, Tokenizer
from shared.errors import APIError
from shared.models import Message
from shared.settings import get_settings
from shared.tree import public_context

log = logging.getLogger("slm.chat")
FOLLOW_POLL_SECONDS = 0.25  # as often as a generating process saves its answers


@dataclass(frozen=True, kw_only=True)
class Snapshot:
    """An answer as saved."""

    id: int
    parent_id: int | None
    ids: tuple[int, ...]
    finish_reason: str | None
    token_count: int
    created_at: datetime
    updated_at: datetime
    context: dict[str, int] | None = None  # the prompt it was made from: the POST stream's meta.context

    @classmethod
    def of(cls, message: Message) -> "Snapshot":
        return cls(
            id=message.id,
            parent_id=message.parent_id,
            ids=tuple(int(t) for t in (message.token_ids or "").split()),
            finish_reason=message.finish_reason,
            token_count=message.token_count or 0,
            created_at=message.created_at,
            updated_at=message.updated_at,
            context=message.context,
        )


class Followed:
    """One answer followed in this process: its latest snapshot (None once deleted) and a version that
    each change raises, so its followers wake once per change."""

    def __init__(self, conversation_id: int, snapshot: Snapshot) -> None:
        self.conversation_id = conversation_id
        self.snapshot: Snapshot | None = snapshot
        self.version = 0
        self.watchers = 0
        self._changed = asyncio.Event()

    def update(self, snapshot: Snapshot | None) -> None:
        if snapshot == self.snapshot:
            return
        self.snapshot, self.version = snapshot, self.version + 1
        self._changed.set()
        self._changed = asyncio.Event()

    async def after(self, version: int) -> tuple[int, Snapshot | None]:
        """The first (version, snapshot) newer than `version`."""
        while self.version == version:
            await self._changed.wait()  # the event of the version seen: a change sets it
        return self.version, self.snapshot


class Followers:
    """Every answer that followers of one event loop wait on, and the one task that reads them."""

    def __init__(self) -> None:
        self.answers: dict[int, Followed] = {}
        self.per_user: Counter[int] = Counter()
        self.task: asyncio.Task[None] | None = None

    def open(self, user_id: int, conversation_id: int, answer: Message) -> "Watch":
        """Start following `answer` for `user_id`; 429 past the user's open followers."""
        cap = get_settings().chat_max_followers_per_user
        if self.per_user[user_id] >= cap:
            raise APIError(
                429,
                "too_many_followers",
                f"At most {cap} answers can be followed at once: close another tab",
                headers={"Retry-After": "5"},
            )
        followed = self.answers.get(answer.id)
        if followed is None or followed.conversation_id != conversation_id:
            followed = self.answers[answer.id] = Followed(conversation_id, Snapshot.of(answer))
        followed.watchers += 1
        self.per_user[user_id] += 1
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._run())
        return Watch(self, followed, answer.id, user_id)

    def close(self, watch: "Watch") -> None:
        self.per_user[watch.user_id] -= 1
        if self.per_user[watch.user_id] <= 0:
            del self.per_user[watch.user_id]
        watch.followed.watchers -= 1
        if watch.followed.watchers <= 0 and self.answers.get(watch.answer_id) is watch.followed:
            del self.answers[watch.answer_id]

    async def _run(self) -> None:
        stale = timedelta(seconds=get_settings().stale_answer_seconds)
        while self.answers:
            await asyncio.sleep(FOLLOW_POLL_SECONDS)
            keys = {answer_id: f.conversation_id for answer_id, f in self.answers.items()}
            if not keys:
                break
            try:
                # shielded: a database call cancelled midway can leave its pooled connection hanging
                found = await asyncio.shield(rows.read_answers(keys, stale))
            except Exception:  # the database is away for a moment (or the pool full): read again next time
                log.warning("could not read the followed answers", exc_info=True)
                continue
            for answer_id, followed in list(self.answers.items()):
                if answer_id in keys:
                    message = found.get(answer_id)
                    followed.update(Snapshot.of(message) if message is not None else None)


_followers = PerLoop(lambda _loop: Followers())


def followers() -> Followers:
    return _followers.get()


@dataclass(eq=False)
class Watch:
    """One follower's hold on a followed answer; `close` (idempotent) lets go of it."""

    hub: Followers
    followed: Followed
    answer_id: int
    user_id: int
    closed: bool = False

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.hub.close(self)


def start(
    tokenizer: Tokenizer, user_id: int, conversation_id: int, answer: Message, after: int | None
) -> AsyncIterator[bytes]:
    """The SSE body of a follower (429 first when the user follows too many answers already)."""
    watch = followers().open(user_id, conversation_id, answer)
    body = follow(tokenizer, watch, conversation_id, after)
    weakref.finalize(body, watch.close)  # a body never started (the client left at once) lets go too
    return body


async def follow(
    tokenizer: Tokenizer, watch: Watch, conversation_id: int, after: int | None
) -> AsyncIterator[bytes]:
    """meta, the tokens after index `after` (all of them when None: a follower with nothing yet gets the
    whole answer, in progress or ended), then done (or error when the answer is deleted meanwhile)."""
    try:
        version, snapshot = watch.followed.version, watch.followed.snapshot
        assert snapshot is not None
        yield sse(
            "meta",
            {
                "conversation_id": conversation_id,
                "user_message_id": snapshot.parent_id,
                "assistant_message_id": snapshot.id,
                # DESIGN's meta has it: the same as the answer's own stream
                "context": None if snapshot.context is None else public_context(snapshot.context),
                "in_progress": snapshot.finish_reason is None,
            },
        )
        sent = after if after is not None else -1  # the last token index the client has
        streamer, fed = TextStreamer(tokenizer), sent + 1  # tokens up to `fed` are in the streamer or sent
        prefix = True  # the first tokens after the client's position may complete a character it has
        while True:
            if snapshot is None:
                yield sse("error", {"code": "not_found", "message": "The answer was deleted"})
                return
            ids = snapshot.ids
            if prefix and 0 < fed <= len(ids):  # start the streamer where the client's text ends
                prefix = False
                streamer.pending = _incomplete_tail(tokenizer, list(ids[:fed]))
            for i in range(fed, len(ids)):
                if text := streamer.put(ids[i]):
                    yield sse("token", {"text": text}, event_id=i)
            fed = max(fed, len(ids))
            if snapshot.finish_reason is not None:
                if (tail := streamer.end()) and ids:
                    yield sse("token", {"text": tail}, event_id=len(ids) - 1)
                yield _end(snapshot)
                return
            version, snapshot = await watch.followed.after(version)
    finally:
        watch.close()


def _incomplete_tail(tokenizer: Tokenizer, ids: list[int]) -> list[int]:
    """The last tokens of `ids` that do not yet make whole characters (the client has not seen them)."""
    for k in range(min(len(ids), 8)):
        if not tokenizer.decode(ids[: len(ids) - k]).endswith("\ufffd"):
            return ids[len(ids) - k :]
    return []


def _end(snapshot: Snapshot) -> bytes:
    if snapshot.finish_reason == "error":
        return sse(
            "error",
            {
                "code": "generation_failed",
                "message": "Generation stopped before the end (the server failed or restarted); "
                "what was saved is kept",
                "assistant_message_id": snapshot.id,
            },
        )
    seconds = max((snapshot.updated_at - snapshot.created_at).total_seconds(), 1e-6)
    done = {"assistant_message_id": snapshot.id, "finish_reason": snapshot.finish_reason}
    return sse(
        "done",
        done
        | {"tokens": snapshot.token_count, "tokens_per_second": round(snapshot.token_count / seconds, 1)},
    )
