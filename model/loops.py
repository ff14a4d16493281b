"""A decoding guard against greedy loops: no sequence of three words twice in one answer.

A small model decoded greedily can fall into a loop ("I got back from my mission so I got back from my
mission so I got back…"); unlikelihood training (model/unlikelihood.py) makes that rarer, but not rare
enough. The guard is the decoding-side half, in the spirit of `no_repeat_ngram_size` in Hugging Face's
`generate` and llama.cpp's repeat penalty, but counted in words, the way the report card counts loops
(`repeats_a_3gram`): when the two words just said were followed earlier in the answer by a word, the
tokens that would start that word again are forbidden. The answer takes the next-best word instead.

What is not a loop is left alone:
- a word spelled out letter by letter ("m-i-s-s-i-s-s-i-p-p-i") is one word, however its tokens repeat,
  and letters spelled apart ("b, a, n, a, n, a") are never forbidden: a sequence of one-letter words;
- a sequence of words holding a number is never forbidden: worked arithmetic repeats "- 4 =" by design
  ("87 - 24 = 87 - 20 - 4 = 67 - 4 = 63"), and 4.5% of the arithmetic answers would break otherwise;
- the prompt: an answer restates the question ("The opposite of hot is cold");
- a token that is part of a character (byte-level BPE splits an emoji or an accented letter into tokens
  that decode to U+FFFD alone) is never forbidden: all such tokens look alike, whatever they spell.

A word is known by its first token that holds a letter or digit: after an opening "(" or quote, the word
inside is the one compared. Two different words that begin with the same token ("photos" and
"photosynthesis") count as the same word here, so the guard can forbid a word that would not repeat.

Words are compared as the card compares them: lower-cased, the punctuation around them dropped. The
state is a few dicts per stream, updated once per token; a step costs a lookup per stream.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Protocol

import numpy as np

PUNCTUATION = ".,!?;:\"'()"  # dropped around a word before words are compared (the card's loop check)
NGRAM_WORDS = 3


def word_key(text: str) -> str:
    """A word as loops are counted: lower-cased, the punctuation around it dropped."""
    return text.strip().strip(PUNCTUATION).lower()


def _has_letters(text: str) -> bool:
    """Whether a key holds a letter or digit (not only punctuation: "(", "“")."""
    return any(ch.isalnum() for ch in text)


class Decoder(Protocol):
    def token_texts(self) -> list[str]: ...


class WordTable:
    """For each token of a vocabulary: whether it starts a word (its text begins with white space),
    whether a word starts after it (it ends with white space: "\n"), and its part of a word's key; and, for
    a word key, the tokens that would start a word with it (`ids`). Built once per tokenizer (16k
    single-token decodes, ~20 ms, mostly outside the GIL: the chat function builds it beside its model's
    load)."""

    def __init__(self, tok: Decoder) -> None:
        texts = tok.token_texts()
        self.starts = [t[:1].isspace() for t in texts]
        self.ends = [t[-1:].isspace() for t in texts]
        # the key a token adds to its word: inner punctuation ("don't") is kept, as the card keeps it
        self.keys = [t.strip().lower() for t in texts]
        # each token's key as a word's key, for ids(); "" for a piece of a character (U+FFFD), never forbidden
        self._words = np.array([k.strip(PUNCTUATION) if "\ufffd" not in k else "" for k in self.keys])
        self._spaced = np.array(self.starts, dtype=bool)
        self._ids: dict[tuple[str, bool], np.ndarray] = {}

    def ids(self, key: str, spaced: bool) -> np.ndarray:
        """The tokens that start a word whose key is `key`: with white space before the word (" Got") when
        `spaced`, else without it ("Got", which starts a word only after white space or an opening "(").
        Found on first asking (~0.15 ms: one comparison over the vocabulary), then kept: a table built for
        every key at once took ~30 ms, and stalled every stream of the step that first needed it."""
        found = self._ids.get((key, spaced))
        if found is None:
            match = (self._words == key) & (self._spaced == spaced) if key else np.zeros(len(self.keys), bool)
            found = self._ids[(key, spaced)] = np.flatnonzero(match)
        return found


class RepeatGuard:
    """One answer's words so far, and the tokens that would start a word said after the same two words
    before. `push` each token of the answer as it is chosen; `banned` gives the token ids to forbid for
    the next one."""

    def __init__(self, table: WordTable, n: int = NGRAM_WORDS) -> None:
        if n < 1:
            raise ValueError(f"a loop guard needs n >= 1 words, got {n}")
        self.table, self.n = table, n
        self.words: list[str] = []  # the answer's finished words (keys), punctuation-only words left out
        self.partial: list[str] = []  # the key parts of the word being written
        self.after_space = True  # the next token starts a word whether or not it begins with a space
        # n-1 words -> the first-token keys of the words that followed them (grams holding a number left out)
        self.followers: dict[tuple[str, ...], set[str]] = defaultdict(set)

    def _current(self) -> str:
        """The key of the word being written ("" while none is)."""
        return word_key("".join(self.partial))

    def _pending(self, current: str) -> tuple[tuple[str, ...], str] | None:
        """The gram the word being written would end, as (its first n-1 words, its last word's first
        key); None if it holds a number or there are too few words."""
        if not current or len(self.words) < self.n - 1:
            return None
        gram = [*self.words[len(self.words) - self.n + 1 :], current]
        if _exempt(gram):
            return None
        first = next((key for part in self.partial if _has_letters(key := word_key(part))), current)
        return tuple(gram[:-1]), first

    def _finish_word(self) -> None:
        pending = self._pending(current := self._current())
        if pending is not None:
            self.followers[pending[0]].add(pending[1])
        if current:
            self.words.append(current)
        self.partial = []

    def push(self, token: int) -> None:
        if self.table.starts[token] or self.after_space:
            self._finish_word()
        self.after_space = self.table.ends[token]
        if self.table.keys[token]:
            self.partial.append(self.table.keys[token])

    def banned(self) -> np.ndarray | None:
        """Token ids that would start a word repeating an earlier n-gram of this answer; None if none."""
        current = self._current()
        opened = bool(self.partial) and not _has_letters(current)  # only "(" or a quote of the word so far
        words = self.words if opened or not current else [*self.words, current]  # were a word to start now
        if len(words) < self.n - 1:
            return None
        context = tuple(words[len(words) - self.n + 1 :])
        if _exempt(context):
            return None
        keys = set(self.followers.get(context, ()))
        pending = self._pending(current)  # the word being written ends a gram only once the next word starts
        if pending is not None and pending[0] == context:
            keys.add(pending[1])
        if not keys:
            return None
        # a token without white space before it starts a word after white space, or after an opening "("
        kinds = (True, False) if self.after_space or opened else (True,)
        ids = [found for k in keys for spaced in kinds if len(found := self.table.ids(k, spaced))]
        return np.concatenate(ids) if ids else None


def _exempt(words: Sequence[str]) -> bool:
    """Whether a sequence of words may repeat: it holds a number, or every word is one letter long."""
    return any(ch.isdigit() for w in words for ch in w) or (bool(words) and all(len(w) == 1 for w in words))


def forbid_repeats(logits: np.ndarray, guards: Sequence[RepeatGuard | None]) -> np.ndarray:
    """logits (B, V) with each row's repeating word starts made impossible; a copy only where some
    row has any."""
    out = logits
    for row, guard in enumerate(guards):
        ids = guard.banned() if guard is not None else None
        if ids is not None:
            if out is logits:
                out = logits.copy()
            out[row, ids] = -np.inf
    return out
