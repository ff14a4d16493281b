"""A conversation's messages form a tree (regenerate and edit add siblings); the active branch is the
path from the root to `Conversation.current_message_id`. Pure functions over loaded messages."""

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import timedelta

from shared.models import Conversation, Message, utcnow


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


def stale_answers(messages: Iterable[Message], stale_seconds: float) -> list[Message]:
    """Answers still "in progress" that no generator has saved for `stale_seconds` (the process was
    killed, the Lambda timed out): the stale rule."""
    cutoff = utcnow() - timedelta(seconds=stale_seconds)
    return [
        m for m in messages if m.role == "assistant" and m.finish_reason is None and m.updated_at < cutoff
    ]


def active_branch(conversation: Conversation) -> tuple[Tree, list[Message]]:
    tree = Tree(conversation.messages)
    current = conversation.current_message_id
    return tree, tree.path(current if current in tree.by_id else None)


def context_window(branch: Sequence[Message]) -> dict[str, int] | None:
    """Where the model's memory begins on this branch: the context the last answer's prompt was saved
    with (what its stream's `meta.context` said: tokens, limit, window, budget, dropped messages); None before
    any answer was (the window is the served model's, which the conversations function does not load)."""
    answers = [m for m in branch if m.role == "assistant" and m.context]
    if not answers:
        return None
    return public_context(answers[-1].context or {})


CONTEXT_FIELDS = ("tokens", "limit", "window", "budget", "dropped_messages")


def public_context(saved: dict[str, int]) -> dict[str, int]:
    """meta.context as DESIGN has it (`limit`: the model's window) from an answer's saved context. Answers
    saved before `budget` existed said the prompt's budget as `limit`, beside `window`: read as today's."""
    context = dict(saved)
    if "budget" not in context and "window" in context:
        context["budget"], context["limit"] = context.get("limit", 0), context["window"]
    return {k: int(context.get(k, 0)) for k in CONTEXT_FIELDS}
