"""The context window: the newest whole turns that fit, leaving room for the answer."""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from model.tokenizer import Tokenizer, fit_to_window, message_token_count, prompt_limit, render_prompt

__all__ = ["MessageTooLong", "Prompt", "fit_window", "prompt_limit"]  # prompt_limit: model.tokenizer's


class MessageTooLong(ValueError):
    def __init__(self, tokens: int, limit: int) -> None:
        super().__init__(
            f"Your message is {tokens} tokens; at most {limit} fit in the model's context window "
            "with room kept for the answer. Shorten it and send again."
        )
        self.tokens, self.limit = tokens, limit


@dataclass
class Prompt:
    ids: list[int]
    dropped: int  # older messages that no longer fit


def fit_window(tokenizer: Tokenizer, messages: Sequence[Mapping[str, str]], limit: int) -> Prompt:
    """The newest whole turns of `messages` (the last one being the new user message) within `limit` tokens,
    counting the `<|assistant|>` that opens the answer. MessageTooLong when the last message alone does not fit."""
    try:
        kept, dropped = fit_to_window(tokenizer, messages, limit)
    except ValueError as exc:
        raise MessageTooLong(message_token_count(tokenizer, messages[-1]), limit - 1) from exc
    return Prompt(render_prompt(tokenizer, kept), dropped)
