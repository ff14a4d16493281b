"""A conversation's messages form a tree (regenerate and edit add siblings); the active branch is the
path from the root to `Conversation.current_message_id`. Pure functions over loaded messages."""

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import timedelta

from shared.models import Conversation, Message, utcnow

# The default model's window and the room a prompt leaves for the answer (model/tokenizer.py's
# ANSWER_RESERVE): the conversations function ships without the model, so they are copied here and a test
# holds them equal to the checkpoint's.
CONTEXT_TOKENS = 384
ANSWER_ROOM = 128


class Tree:
    def __init__(self, messages: Iterable[Message]) -> None:
        self.by_id = {m.id: m for m in messages}
        self.children: dict[int | None, list[Message]] = defaultdict(list)
        for m in sorted(self.by_id.values(), key=lambda m: m.id):  # oldest first
            self.children[m.parent_id].append(m)

    def path(self, message_id: int | None) -> list[Message]:
        """Root → message_id, in order (empty for None)."""
        path: list[Message] = []
        seen: set[int] = set()
        while message_id is not None and message_id not in seen:
            seen.add(message_id)
            message = self.by_id[message_id]
            path.append(message)
            message_id = message.parent_id
        return path[::-1]

    def newest_leaf(self, message_id: int) -> int:
        """message_id continued through its newest descendants to the end of their branch."""
        while self.children.get(message_id):
            message_id = self.children[message_id][-1].id
        return message_id

    def sibling_ids(self, message: Message) -> list[int]:
        return [m.id for m in self.children[message.parent_id]]

    def latest_answer(self) -> Message | None:
        answers = [m for m in self.by_id.values() if m.role == "assistant"]
        return max(answers, key=lambda m: m.id) if answers else None


def history(path: Sequence[Message]) -> list[dict[str, str]]:
    """The prompt's messages: the path's turns with text (an empty answer says nothing)."""
    return [{"role": m.role, "content": m.content} for m in path if m.content]


def finalize_stale(messages: Iterable[Message], stale_seconds: float) -> list[Message]:
    """Answers still "in progress" that no generator has saved for `stale_seconds` (the process was
    killed, the Lambda timed out) become "interrupted", keeping what was saved. The caller commits."""
    cutoff = utcnow() - timedelta(seconds=stale_seconds)
    stale = [
        m for m in messages if m.role == "assistant" and m.finish_reason is None and m.updated_at < cutoff
    ]
    for m in stale:
        m.finish_reason = "interrupted"
    return stale


def active_branch(conversation: Conversation) -> tuple[Tree, list[Message]]:
    tree = Tree(conversation.messages)
    current = conversation.current_message_id
    return tree, tree.path(current if current in tree.by_id else None)


def context_window(branch: Sequence[Message]) -> dict[str, int]:
    """Where the model's memory begins on this branch, as the last answer's prompt saw it: its saved
    context (what the stream's meta said), or for answers saved before that was kept: the newest
    whole turns (each starting at a user message) whose tokens fit in CONTEXT_TOKENS - ANSWER_ROOM.
    Token counts are the stored ones (a user message's role token + text; an answer's generated tokens +
    its <|assistant|> and <|eos|>), so the figure matches the stream's `meta.context` to a token or two."""
    answers = [m for m in branch if m.role == "assistant" and m.context]
    if answers:  # what the stream said when the last answer was generated
        c = answers[-1].context or {}
        keys = ("tokens", "limit", "window", "dropped_messages")
        return {k: int(c.get(k, 0)) for k in keys} | {"window": int(c.get("window") or CONTEXT_TOKENS)}
    limit = CONTEXT_TOKENS - ANSWER_ROOM
    end = len(branch)
    if end and branch[-1].role == "assistant":
        end -= 1  # the prompt of the last answer: everything before it
    counts = [(m.token_count or 0) + (2 if m.role == "assistant" else 0) for m in branch[:end]]
    starts = [i for i in range(end) if branch[i].role == "user"]
    for start in starts:
        if sum(counts[start:]) + 1 <= limit:
            return {
                "tokens": sum(counts[start:]) + 1,
                "limit": limit,
                "window": CONTEXT_TOKENS,
                "dropped_messages": start,
            }
    return {
        "tokens": sum(counts) + 1 if counts else 0,
        "limit": limit,
        "window": CONTEXT_TOKENS,
        "dropped_messages": 0,
    }
