"""The decoding loop guard (model/loops.py) on the default tokenizer's real vocabulary."""

import numpy as np
import pytest

from model.checkpoint import DEFAULT_CHECKPOINT
from model.config import TOKENIZER
from model.evaluate import repeats_a_3gram
from model.loops import NGRAM_WORDS, PUNCTUATION, RepeatGuard, WordTable, forbid_repeats
from model.sampling import SamplingParams, repeat_guard, sample_next_token
from model.tokenizer import Tokenizer
from shared.settings import Settings


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    return Tokenizer.from_file(DEFAULT_CHECKPOINT / TOKENIZER)


@pytest.fixture(scope="module")
def table(tok: Tokenizer) -> WordTable:
    return WordTable(tok)


def banned_while_writing(table: WordTable, tok: Tokenizer, text: str, n: int = NGRAM_WORDS) -> list[str]:
    """Each token of `text` that the guard would have forbidden at the moment it was written."""
    guard, hit = RepeatGuard(table, n), []
    for token in tok.encode(text):
        ids = guard.banned()
        if ids is not None and token in set(ids.tolist()):
            hit.append(tok.decode([token]))
        guard.push(token)
    return hit


def loop_decode(tok: Tokenizer, table: WordTable | None, loop: str, steps: int = 80, seed: int = 0) -> str:
    """Greedy decoding of a "model" that always wants the next token of `loop` said over and over (its
    logit 10 above a fixed random spread over the vocabulary), guarded by `table` or not."""
    ids = tok.encode(loop)
    noise = np.random.default_rng(seed).normal(size=(steps, tok.vocab_size)).astype(np.float32)
    noise[:, : tok.pad_id + 1] = -np.inf  # the special tokens: an answer ends at <|eos|>, this one must not
    guard = RepeatGuard(table) if table else None
    out: list[int] = []
    for step in range(steps):
        logits = noise[step : step + 1].copy()
        logits[0, ids[step % len(ids)]] += 10
        token = int(sample_next_token(forbid_repeats(logits, [guard]), SamplingParams(temperature=0))[0])
        out.append(token)
        if guard:
            guard.push(token)
    return tok.decode(out)


@pytest.mark.parametrize(
    "loop",
    [
        "I got back from my mission so ",
        "In mathematics, mathematics, ",
        "I like it.\nI like it!\n",  # a line starts without a space, and case and punctuation differ
        "he is just really good at it and i think ",
    ],
)
def test_a_looping_model_repeats_no_three_words_under_the_guard(tok, table, loop) -> None:
    assert repeats_a_3gram(loop_decode(tok, None, loop))  # the model alone loops
    guarded = loop_decode(tok, table, loop)
    assert not repeats_a_3gram(guarded), guarded
    assert loop.split()[0] in guarded  # it still said what it wanted until the repeat


def test_the_repeat_is_forbidden_at_the_word_that_would_complete_it(tok, table) -> None:
    # the third word after "got back" -> forbidden the second time "I got" is followed by "back"
    assert banned_while_writing(table, tok, "I got back from it, I got back") == [" back"]
    assert banned_while_writing(table, tok, "In mathematics, mathematics, mathematics, mathematics") == [
        " mathematics"
    ]
    assert banned_while_writing(table, tok, "I got back from it, I got back", n=4) == []
    assert banned_while_writing(table, tok, "we ran and ran", n=1) == [" ran"]  # no word twice
    assert banned_while_writing(table, tok, "We like it, so we like IT") == [" IT"]  # case and punctuation
    assert banned_while_writing(table, tok, "We like it, so we like\nit") == ["it"]  # a line starts bare


@pytest.mark.parametrize(
    ("text", "first"),
    [
        ("I said (yes) and I said (yes)", "yes"),  # the word after an opening bracket starts bare
        ('I like "cats" and I like "cats"', "c"),  # "c" + "ats": its first token is forbidden
        ("he said \u201cyes\u201d and he said \u201cyes\u201d", "yes"),  # a curly quote is no word of its own
    ],
)
def test_a_word_opened_by_a_bracket_or_quote_is_caught_at_the_word(tok, table, text, first) -> None:
    assert repeats_a_3gram(text)  # the card counts it as a loop
    assert banned_while_writing(table, tok, text) == [first]


def test_different_words_after_the_same_quote_or_emoji_are_not_forbidden(tok, table) -> None:
    assert banned_while_writing(table, tok, "he said \u201cyes\u201d and he said \u201cno\u201d") == []
    # an emoji is several tokens that each decode to U+FFFD alone: all of them look alike to the table
    assert banned_while_writing(table, tok, "we love it \U0001f600 and they love it \U0001f389") == []
    pieces = [i for i, key in enumerate(table.keys) if "\ufffd" in key]
    assert pieces  # the vocabulary has them (byte-level BPE)
    assert all(len(table.ids(table.keys[i], spaced)) == 0 for i in pieces for spaced in (True, False))


def test_the_tokens_of_a_word_are_found_with_and_without_white_space(tok, table) -> None:
    for word in ("back", "yes", "cat"):  # each one token, with white space before it and without
        spaced, bare = (set(table.ids(word, s).tolist()) for s in (True, False))
        assert tok.encode(" " + word)[0] in spaced and tok.encode(word)[0] in bare
        assert all(table.keys[i].strip(PUNCTUATION) == word for i in spaced | bare)
        assert all(table.starts[i] for i in spaced) and not any(table.starts[i] for i in bare)
    assert len(table.ids("", True)) == 0 and len(table.ids("no such word here", True)) == 0


@pytest.mark.parametrize(
    "answer",
    [
        "The word mississippi is spelled m-i-s-s-i-s-s-i-p-p-i.",  # one word, whatever its letters repeat
        "87 - 24 = 87 - 20 - 4 = 67 - 4 = 63.",  # worked arithmetic repeats "- 4 =" by design
        "There are 4 letters in the word book: b, o, o, k. The letter o is there 2 times.",
        "The letters of banana are b, a, n, a, n, a.",  # letters spelled apart: one-letter words
        "m i s s i s s i p p i",
    ],
)
def test_answers_that_repeat_by_design_are_left_alone(tok, table, answer) -> None:
    assert banned_while_writing(table, tok, answer) == []


def test_a_restated_question_is_not_a_repeat(tok, table) -> None:
    # only the answer's own words count: the prompt is not pushed
    assert banned_while_writing(table, tok, "The opposite of hot is cold.") == []


def test_engines_and_settings_share_the_guard(tok, table) -> None:
    assert Settings.model_fields["chat_loop_guard_words"].default == NGRAM_WORDS
    assert repeat_guard(SamplingParams(), None) is None  # off by default for library callers
    with pytest.raises(ValueError, match="WordTable"):
        repeat_guard(SamplingParams(no_repeat_ngram=3), None)
    with pytest.raises(ValueError, match="n >= 1"):
        RepeatGuard(table, 0)
    assert isinstance(repeat_guard(SamplingParams(no_repeat_ngram=3), table), RepeatGuard)
