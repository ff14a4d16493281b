"""Byte-level BPE tokenizer and the chat format, written once.

The chat format (the trainer, the terminal chat and the server all call these functions):

    <|user|>text<|assistant|>text<|eos|><|user|>text<|assistant|>...

A system message, if given, is prefixed to the text of the next user turn (followed by a blank
line): the model has no separate system role.

This module imports no torch, so light tools (token counting, data preparation) stay light.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, models, pre_tokenizers, trainers

SPECIAL_TOKENS = ["<|user|>", "<|assistant|>", "<|eos|>", "<|pad|>"]
# The specials come first in the vocabulary, so their ids are part of the format.
USER_ID, ASSISTANT_ID, EOS_ID, PAD_ID = range(len(SPECIAL_TOKENS))
VOCAB_SIZE = 16387  # 4 specials + 256 byte symbols + 16,127 merges
SYSTEM_SEPARATOR = "\n\n"
ANSWER_RESERVE = 128  # tokens a prompt leaves free for the answer (less when the answer may be shorter)


class Tokenizer:
    """A HF `tokenizers` byte-level BPE with four special tokens, each a single id.

    Plain text never turns into a special id: a user who types "<|eos|>" gets ordinary tokens.
    """

    def __init__(self, hf: HFTokenizer):
        for i, token in enumerate(SPECIAL_TOKENS):
            if hf.token_to_id(token) != i:
                raise ValueError(f"tokenizer must map {token!r} to id {i}, got {hf.token_to_id(token)}")
        hf.encode_special_tokens = True  # specials typed in text are split like any other text
        self._hf = hf
        self.vocab_size: int = hf.get_vocab_size()
        # the most bytes one token of plain text covers (a byte-level token's string has one character per
        # byte): a text of n characters is at least n / this many tokens (see fit_prompt)
        specials = len(SPECIAL_TOKENS)
        self.max_token_bytes: int = max(len(t) for t, i in hf.get_vocab().items() if i >= specials)
        self.user_id, self.assistant_id, self.eos_id, self.pad_id = USER_ID, ASSISTANT_ID, EOS_ID, PAD_ID

    @classmethod
    def from_file(cls, path: str | Path) -> Tokenizer:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no tokenizer file at {path}")
        return cls(HFTokenizer.from_file(str(path)))

    def save(self, path: str | Path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._hf.save(str(path))

    @classmethod
    def train(
        cls, texts: Iterable[str], vocab_size: int = VOCAB_SIZE, show_progress: bool = True
    ) -> Tokenizer:
        """Learn merges until the vocabulary (specials and the 256 byte symbols included) has
        exactly `vocab_size` tokens; raises ValueError when the text is too small to get there."""
        hf = HFTokenizer(models.BPE())
        hf.pre_tokenizer = pre_tokenizers.Sequence(  # every digit its own token: arithmetic sees places
            [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
        )
        hf.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=SPECIAL_TOKENS,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=show_progress,
        )
        hf.train_from_iterator(texts, trainer=trainer)
        if hf.get_vocab_size() != vocab_size:
            raise ValueError(
                f"the training text only supports {hf.get_vocab_size()} tokens, {vocab_size} were asked for: "
                "train on more (or more varied) text, or ask for a smaller vocabulary"
            )
        return cls(hf)

    def encode(self, text: str) -> list[int]:
        return self._hf.encode(text, add_special_tokens=False).ids

    def decode(self, ids: Sequence[int]) -> str:
        # skip_special_tokens=False: a special id decodes to its marker, so nothing is silently lost
        return self._hf.decode(list(ids), skip_special_tokens=False)

    def token_texts(self) -> list[str]:
        """The text of every id decoded alone, in id order (what decode([i]) gives): one call into the
        tokenizers library, which lets go of the GIL for most of it, where 16k decode calls would hold it."""
        return self._hf.decode_batch([[i] for i in range(self.vocab_size)], skip_special_tokens=False)

    def id_to_token(self, i: int) -> str | None:
        return self._hf.id_to_token(i)

    def token_bytes(self) -> list[int]:
        """UTF-8 bytes of text each id stands for (byte-level BPE: one symbol per byte); 0 for the
        specials, which are no text. What bits per byte divides by."""
        return [
            0 if i < len(SPECIAL_TOKENS) else len(self._hf.id_to_token(i) or "")
            for i in range(self.vocab_size)
        ]


def _segments(tok: Tokenizer, messages: Sequence[Mapping[str, str]]) -> list[tuple[list[int], list[int]]]:
    """(ids, loss_mask) per message, in order; their concatenation is the rendered conversation."""
    out = []
    for i, m in enumerate(messages):
        role, content = m.get("role"), m.get("content")
        if not isinstance(content, str):
            raise ValueError(f"message {i}: content must be a string, got {type(content).__name__}")
        if role == "system":
            if i + 1 >= len(messages) or messages[i + 1].get("role") != "user":
                raise ValueError(f"message {i}: a system message must be followed by a user message")
            ids = tok.encode(content + SYSTEM_SEPARATOR)
            out.append(([tok.user_id] + ids, [0] * (len(ids) + 1)))
        elif role == "user":
            after_system = i > 0 and messages[i - 1].get("role") == "system"
            ids = ([] if after_system else [tok.user_id]) + tok.encode(content)
            out.append((ids, [0] * len(ids)))
        elif role == "assistant":
            ids = tok.encode(content)
            out.append(([tok.assistant_id] + ids + [tok.eos_id], [0] + [1] * (len(ids) + 1)))
        else:
            raise ValueError(f"message {i}: unknown role {role!r} (expected 'user', 'assistant' or 'system')")
    return out


def render_conversation(tok: Tokenizer, messages: Sequence[Mapping[str, str]]) -> tuple[list[int], list[int]]:
    """Token ids of a whole conversation and its loss mask (same length).

    mask[i] == 1 where ids[i] is an assistant content token or the <|eos|> closing an assistant
    turn, 0 elsewhere. For next-token training, predict ids[1:] from ids[:-1] with mask[1:].
    """
    ids: list[int] = []
    mask: list[int] = []
    for seg_ids, seg_mask in _segments(tok, messages):
        ids += seg_ids
        mask += seg_mask
    return ids, mask


def render_prompt(tok: Tokenizer, messages: Sequence[Mapping[str, str]]) -> list[int]:
    """The conversation so far followed by <|assistant|>, for the model to continue."""
    return render_conversation(tok, messages)[0] + [tok.assistant_id]


def message_token_count(tok: Tokenizer, message: Mapping[str, str]) -> int:
    """Tokens this message adds inside render_conversation: role token + text (+ <|eos|> for the
    assistant). A system message adds <|user|> + text + separator, and the user message after it then
    adds only its text, so the count of a user message right after a system one is one too high
    (counts never under-estimate)."""
    if message.get("role") == "system":
        return 1 + len(tok.encode(str(message.get("content", "")) + SYSTEM_SEPARATOR))
    return len(_segments(tok, [message])[0][0])


def prompt_limit(block_size: int, max_new_tokens: int) -> int:
    """Tokens the prompt may take in a block_size window: the rest is kept for the answer,
    max_new_tokens of it but at most ANSWER_RESERVE."""
    return block_size - min(max_new_tokens, ANSWER_RESERVE)


class PromptTooLong(ValueError):
    """The newest user turn alone does not fit in the window with the answer's room kept."""

    def __init__(self, tokens: int, limit: int) -> None:
        super().__init__(
            f"Your message is {tokens} tokens; at most {limit} fit in the model's context window "
            "with room kept for the answer. Shorten it and send again."
        )
        self.tokens, self.limit = tokens, limit


@dataclass(frozen=True, kw_only=True)
class Prompt:
    ids: list[int]  # render_prompt of `messages`
    messages: list[Mapping[str, str]]  # the newest whole turns that fit
    dropped: int  # older messages that no longer fit
    limit: int  # the tokens it could take


def _count_within(tok: Tokenizer, message: Mapping[str, str], limit: int) -> int:
    """message_token_count, or a lower bound above `limit` for a text too long to fit in it at all, found
    without tokenizing it (each token covers at most tok.max_token_bytes characters)."""
    content = message.get("content")
    if isinstance(content, str) and len(content) > (limit + 1) * tok.max_token_bytes:
        return len(content) // tok.max_token_bytes
    return message_token_count(tok, message)


def fit_prompt(
    tok: Tokenizer, messages: Sequence[Mapping[str, str]], block_size: int, max_new_tokens: int
) -> Prompt:
    """The prompt for an answer of up to max_new_tokens in a block_size window: the newest whole turns
    (each starting at a user message) whose render_prompt fits in prompt_limit, keeping a leading
    system message while it fits. The one place a prompt is fitted: the terminal chat, /api/chat and
    /v1 call it. PromptTooLong when not even the last user turn fits.

    The messages are counted from the newest back, and only until the window is full: a long history (an
    OpenAI-compatible client sends the whole conversation each time) costs what its newest turns cost."""
    limit = prompt_limit(block_size, max_new_tokens)
    pinned = 1 if messages and messages[0].get("role") == "system" else 0
    if not any(m.get("role") == "user" for m in messages[pinned:]):
        raise ValueError("the messages hold no user message to answer")
    system = _count_within(tok, messages[0], limit) if pinned else 0
    newest = message_token_count(tok, messages[-1])  # exact: the error below reports it
    total, with_system, alone = 0, None, None  # the oldest turn start that fits, with and without it
    for i in range(len(messages) - 1, pinned - 1, -1):
        total += newest if i == len(messages) - 1 else _count_within(tok, messages[i], limit)
        if total + 1 > limit:  # + <|assistant|>; an older start only adds to it
            break
        if messages[i].get("role") == "user":
            alone = i
            if pinned and total + system + 1 <= limit:
                with_system = i
    if with_system is not None:
        kept = [messages[0], *messages[with_system:]]
        return Prompt(ids=render_prompt(tok, kept), messages=kept, dropped=with_system - 1, limit=limit)
    if alone is not None:
        kept = list(messages[alone:])
        return Prompt(ids=render_prompt(tok, kept), messages=kept, dropped=alone, limit=limit)
    raise PromptTooLong(newest, limit - 1)


class TextStreamer:
    """Turns token ids into text deltas that never split a UTF-8 character."""

    def __init__(self, tokenizer: Tokenizer):
        self.tokenizer = tokenizer
        self.pending: list[int] = []

    def put(self, token_id: int) -> str:
        self.pending.append(token_id)
        text = self.tokenizer.decode(self.pending)
        # a trailing U+FFFD means the bytes of a character are still incomplete; wait (a character
        # is at most 4 bytes, so after 8 tokens it is truly invalid and goes out as it is)
        if text.endswith("\ufffd") and len(self.pending) < 8:
            return ""
        self.pending = []
        return text

    def end(self) -> str:
        text = self.tokenizer.decode(self.pending) if self.pending else ""
        self.pending = []
        return text
