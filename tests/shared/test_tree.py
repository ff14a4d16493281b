"""shared/tree.py: the active branch, the stale rule and the context a conversation reports."""

from datetime import timedelta

from shared.models import Conversation, Message, utcnow
from shared.tree import Tree, active_branch, context_window, public_context, stale_answers


def message(id: int, role: str, parent: int | None, **kwargs) -> Message:
    now = utcnow()
    fields = {"content": f"m{id}", "created_at": now, "updated_at": now, "finish_reason": "eos"} | kwargs
    return Message(id=id, conversation_id=1, role=role, parent_id=parent, **fields)


def test_the_active_branch_is_the_path_to_the_current_message_and_siblings_are_versions() -> None:
    q1, a1, a1b, q2, a2 = (
        message(1, "user", None),
        message(2, "assistant", 1),
        message(3, "assistant", 1),  # regenerated: a sibling of 2
        message(4, "user", 2),
        message(5, "assistant", 4),
    )
    conversation = Conversation(
        id=1, user_id=1, title="t", messages=[q1, a1, a1b, q2, a2], current_message_id=5
    )
    tree, branch = active_branch(conversation)
    assert [m.id for m in branch] == [1, 2, 4, 5]
    assert tree.sibling_ids(a1) == [2, 3] and tree.newest_leaf(2) == 5 and tree.latest_answer() is a2
    assert Tree([q1, a1]).path(None) == []


def test_context_window_is_what_the_last_answers_stream_said_and_null_before() -> None:
    """No copy of the model's window lives here: the context is the one saved with the last answer."""
    said = {"tokens": 212, "limit": 384, "window": 384, "budget": 256, "dropped_messages": 4}
    older = {"tokens": 10, "limit": 384, "window": 384, "budget": 256, "dropped_messages": 0}
    branch = [message(1, "user", None), message(2, "assistant", 1, context=older)]
    branch += [message(3, "user", 2), message(4, "assistant", 3, context=said)]
    assert context_window(branch) == said
    assert context_window(branch[:1]) is None  # a question not answered yet: nothing to say
    assert context_window([message(1, "user", None), message(2, "assistant", 1)]) is None


def test_a_context_saved_before_budget_existed_reads_as_designs() -> None:
    """Answers saved before `budget` said the prompt's budget as `limit` beside `window`: read back with
    DESIGN's `limit` (the window), the budget under its own name."""
    saved = {"tokens": 212, "limit": 256, "window": 384, "dropped_messages": 4}
    branch = [message(1, "user", None), message(2, "assistant", 1, context=saved)]
    expected = {"tokens": 212, "limit": 384, "window": 384, "budget": 256, "dropped_messages": 4}
    assert context_window(branch) == public_context(saved) == expected
    assert public_context(expected) == expected  # today's shape is read as it is


def test_an_answer_that_stopped_moving_is_stale() -> None:
    old = utcnow() - timedelta(seconds=60)
    moving = message(1, "assistant", None, finish_reason=None)
    dead = message(2, "assistant", None, finish_reason=None, updated_at=old)
    ended = message(3, "assistant", None, updated_at=old)
    question = message(4, "user", None, finish_reason=None, updated_at=old)
    assert stale_answers([moving, dead, ended, question], 30) == [dead]
    assert dead.finish_reason is None  # the rule alone changes nothing
