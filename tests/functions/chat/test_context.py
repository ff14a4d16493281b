import pytest

from functions.chat.context import MessageTooLong, fit_window
from model.tokenizer import message_token_count, render_prompt


def turns(n: int) -> list[dict[str, str]]:
    messages = []
    for i in range(n):
        messages += [
            {"role": "user", "content": f"question number {i} about the sea"},
            {"role": "assistant", "content": f"answer number {i} about the sea and the sky"},
        ]
    return messages


def test_fit_window_keeps_everything_that_fits(tokenizer) -> None:
    messages = turns(2) + [{"role": "user", "content": "and now?"}]
    prompt = fit_window(tokenizer, messages, limit=10_000)
    assert prompt.dropped == 0 and prompt.ids == render_prompt(tokenizer, messages)
    assert prompt.ids[-1] == tokenizer.assistant_id


def test_fit_window_drops_the_oldest_whole_turns(tokenizer) -> None:
    messages = turns(6) + [{"role": "user", "content": "and now?"}]
    costs = [message_token_count(tokenizer, m) for m in messages]
    limit = sum(costs[-5:]) + 1  # room for the last two turns + the new message + <|assistant|>
    prompt = fit_window(tokenizer, messages, limit)
    assert prompt.dropped == len(messages) - 5
    assert prompt.ids == render_prompt(tokenizer, messages[-5:])
    assert len(prompt.ids) <= limit


def test_fit_window_never_starts_with_an_answer(tokenizer) -> None:
    messages = turns(3) + [{"role": "user", "content": "and now?"}]
    costs = [message_token_count(tokenizer, m) for m in messages]
    limit = sum(costs[-4:]) + 1  # would fit an orphaned answer, its question cut off
    prompt = fit_window(tokenizer, messages, limit)
    assert prompt.ids[0] == tokenizer.user_id
    assert prompt.dropped == len(messages) - 3


def test_fit_window_refuses_a_message_that_alone_does_not_fit(tokenizer) -> None:
    long = {"role": "user", "content": "sea " * 200}
    with pytest.raises(MessageTooLong) as info:
        fit_window(tokenizer, [long], limit=50)
    assert info.value.tokens == message_token_count(tokenizer, long)
    assert f"{info.value.tokens} tokens" in str(info.value) and "49" in str(info.value)
