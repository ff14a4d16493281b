"""The everyday words, and the generated questions about them, repeated in a fine-tuning mix.

A new user asks about common words: "How do you spell cat?", "What is the opposite of big?", "What is a
dog?". The generated corpus asks about ~20,000 words, each word's problem once or a few times among
~150,000 rows, so a fine-tuning run of a few million tokens sees "the opposite of fast" once or twice,
and the model answers "The opposite of fast is fast." `model.train --everyday N=TIMES` puts the rows
about the N most frequent words of the human dialogue TIMES times into their source (counted by
`lexicon.Chat`, as `make corpus` counts them to pin its 3,000 most frequent words' problems to the train
split; here over the train split's conversations).

A row is about a word when it is one question and its answer, and the answer opens with one of the
generated answers' forms: "The word W is spelled / means", "The opposite of W is", "Another word for W
is", "A W is a kind of", "W is a person, not a flower".
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence

from model.corpus.lexicon import Chat
from model.data import Messages

# the sources of generated questions about single words (model/corpus: skills, lexicon, facts)
SOURCES = ("skills", "wordnet_qa", "wordnet_rel", "facts")
# the human dialogue whose counts rank the words
RANKED_BY = ("chitchat", "chatterbot")
SUBJECT = re.compile(r"(?:The word |The opposite of |Another word for |An? )?([A-Za-z]+) (?:is|means)\b")


def parse(spec: str) -> tuple[int, int]:
    """ "N=TIMES" -> (N, TIMES), both at least 1."""
    words, sep, times = spec.partition("=")
    if not (sep and words.isdigit() and times.isdigit() and int(words) >= 1 and int(times) >= 1):
        raise ValueError(f"want N=TIMES with whole numbers of 1 or more, got {spec!r}")
    return int(words), int(times)


def frequent_words(conversations: Iterable[Messages], n: int) -> set[str]:
    """The n most frequent lower-case words of the conversations' messages (ties by first seen), counted
    as the corpus builder counts them."""
    chat = Chat.count(m["content"] for messages in conversations for m in messages)
    return {w for w, _ in chat.words.most_common(n)}


def subject(messages: Messages) -> str | None:
    """The word a one-question row asks about, lower-case, or None (not one question, or no such form)."""
    if len(messages) != 2 or messages[0]["role"] != "user" or messages[1]["role"] != "assistant":
        return None
    m = SUBJECT.match(messages[1]["content"])
    return m.group(1).lower() if m else None


def repeat(train: Mapping[str, Sequence], spec: str) -> tuple[dict[str, list], dict[str, int]]:
    """train with each SOURCES row about one of the N most frequent words of RANKED_BY there TIMES
    times (the copies after the source's rows), and {source: rows added}."""
    n, times = parse(spec)
    if missing := [name for name in RANKED_BY if name not in train]:
        raise ValueError(f"the words are ranked by {', '.join(RANKED_BY)}: no {', '.join(missing)} here")
    words = frequent_words((c for name in RANKED_BY for c in train[name]), n)
    out = {name: list(items) for name, items in train.items()}
    added: dict[str, int] = {}
    for name in SOURCES:
        if name not in out:
            continue
        about = [row for row in out[name] if subject(row) in words]
        out[name] += about * (times - 1)
        added[name] = len(about) * (times - 1)
    return out, added
