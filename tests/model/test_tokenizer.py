import pytest

from model.tokenizer import (
    ANSWER_RESERVE,
    SPECIAL_TOKENS,
    VOCAB_SIZE,
    PromptTooLong,
    Tokenizer,
    fit_prompt,
    message_token_count,
    render_conversation,
    render_prompt,
)


@pytest.mark.parametrize(
    "text",
    [
        "hello world",
        "Emoji 🙂🚀 and 👍🏽 skin tone",
        "日本語のテキスト、中文",
        "crème brûlée façade",
        "  spaces\n\ttabs  ",
        "",
    ],
)
def test_encode_decode_round_trips_any_text(tokenizer, text):
    assert tokenizer.decode(tokenizer.encode(text)) == text


def test_token_texts_are_each_id_decoded_alone(tokenizer):
    """One batched call (what the loop guard's WordTable reads) gives what decode([i]) gives, specials
    and partial UTF-8 bytes included."""
    texts = tokenizer.token_texts()
    assert len(texts) == tokenizer.vocab_size
    assert texts == [tokenizer.decode([i]) for i in range(tokenizer.vocab_size)]


def test_specials_are_single_ids_in_order(tokenizer, tiny_config):
    assert tokenizer.vocab_size == tiny_config.vocab_size
    ids = [tokenizer.user_id, tokenizer.assistant_id, tokenizer.eos_id, tokenizer.pad_id]
    assert ids == [0, 1, 2, 3]
    for token, i in zip(SPECIAL_TOKENS, ids, strict=True):
        assert tokenizer.decode([i]) == token


def test_encode_typed_special_markers_stays_plain_text(tokenizer):
    text = "please <|eos|> stop <|user|><|assistant|><|pad|>"
    ids = tokenizer.encode(text)
    assert not set(ids) & {0, 1, 2, 3}
    assert tokenizer.decode(ids) == text


def test_save_and_load_keeps_encoding(tokenizer, tmp_path):
    tokenizer.save(tmp_path / "tok.json")
    loaded = Tokenizer.from_file(tmp_path / "tok.json")
    text = "hello 🙂 <|eos|> 日本語"
    assert loaded.encode(text) == tokenizer.encode(text)
    assert loaded.vocab_size == tokenizer.vocab_size


def test_train_default_size_gives_exact_vocab():
    import random

    rng = random.Random(0)
    syllables = [a + b for a in "bcdfghklmnprstvz" for b in "aeiou"]
    lines = [
        " ".join("".join(rng.choice(syllables) for _ in range(rng.randint(1, 4))) for _ in range(12))
        for _ in range(4000)
    ]
    lines += [
        f"{rng.randint(0, 10**6)} + {rng.randint(0, 999)} = {rng.randint(0, 10**6)}" for _ in range(2000)
    ]
    tok = Tokenizer.train(lines, show_progress=False)
    assert tok.vocab_size == VOCAB_SIZE == 16387
    assert [tok.id_to_token(i) for i in range(4)] == ["<|user|>", "<|assistant|>", "<|eos|>", "<|pad|>"]
    assert tok.decode(tok.encode(lines[0])) == lines[0]
    # numbers are common in the training text, yet every digit stays its own token
    pieces = [tok.decode([i]) for i in tok.encode("12 x 2026 = 24312")]
    assert [p for p in pieces if any(c.isdigit() for c in p)] == list("12202624312")
    vocab = [tok.id_to_token(i) or "" for i in range(tok.vocab_size)]
    with_digits = {t for t in vocab if any(c in "0123456789" for c in t)}
    assert with_digits == set("0123456789")


def test_train_too_little_text_raises():
    with pytest.raises(ValueError, match="only supports"):
        Tokenizer.train(["a b a b"], vocab_size=1000, show_progress=False)


def test_render_conversation_masks_assistant_text_and_eos(tokenizer):
    msgs = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello you"},
        {"role": "user", "content": "why"},
        {"role": "assistant", "content": "yes"},
    ]
    ids, mask = render_conversation(tokenizer, msgs)
    u, a, e = tokenizer.user_id, tokenizer.assistant_id, tokenizer.eos_id
    hi, hello, why, yes = (tokenizer.encode(m["content"]) for m in msgs)
    assert ids == [u, *hi, a, *hello, e, u, *why, a, *yes, e]
    assert mask == [0] * (1 + len(hi)) + [0] + [1] * (len(hello) + 1) + [0] * (1 + len(why)) + [0] + [1] * (
        len(yes) + 1
    )
    assert sum(message_token_count(tokenizer, m) for m in msgs) == len(ids)


def test_render_prompt_ends_with_assistant_token(tokenizer):
    msgs = [{"role": "user", "content": "hello"}]
    assert render_prompt(tokenizer, msgs) == [
        tokenizer.user_id,
        *tokenizer.encode("hello"),
        tokenizer.assistant_id,
    ]


def test_render_system_message_joins_first_user_turn(tokenizer):
    msgs = [{"role": "system", "content": "be kind"}, {"role": "user", "content": "hi"}]
    ids, mask = render_conversation(tokenizer, msgs)
    assert ids == [tokenizer.user_id, *tokenizer.encode("be kind\n\n"), *tokenizer.encode("hi")]
    assert ids.count(tokenizer.user_id) == 1 and set(mask) == {0}
    counted = sum(message_token_count(tokenizer, m) for m in msgs)
    assert counted - 1 == len(ids)  # the user turn after a system message is counted with its role token


@pytest.mark.parametrize(
    "msgs",
    [
        [{"role": "robot", "content": "x"}],
        [{"role": "user", "content": None}],
        [{"role": "system", "content": "alone"}],
        [{"role": "system", "content": "x"}, {"role": "assistant", "content": "y"}],
    ],
)
def test_render_bad_messages_raise(tokenizer, msgs):
    with pytest.raises(ValueError):
        render_conversation(tokenizer, msgs)


def _turns(n):
    msgs = []
    for i in range(n):
        msgs += [
            {"role": "user", "content": f"question {i} the cat"},
            {"role": "assistant", "content": f"answer {i}"},
        ]
    return msgs


def fit(tokenizer, messages, limit):
    """fit_prompt with a prompt limit of `limit` tokens (the answer's room: 1 token)."""
    return fit_prompt(tokenizer, messages, block_size=limit + 1, max_new_tokens=1)


def test_fit_prompt_keeps_everything_that_fits(tokenizer):
    msgs = [*_turns(2), {"role": "user", "content": "last"}]
    prompt = fit(tokenizer, msgs, 1000)
    assert prompt.messages == msgs and prompt.dropped == 0 and prompt.limit == 1000
    assert prompt.ids == render_prompt(tokenizer, msgs)


def test_fit_prompt_drops_oldest_whole_turns_never_starting_with_an_answer(tokenizer):
    msgs = [*_turns(5), {"role": "user", "content": "last"}]
    limit = len(render_prompt(tokenizer, msgs[6:])) + 2  # room for the last two turns and the new message
    prompt = fit(tokenizer, msgs, limit)
    assert prompt.messages == msgs[6:] and prompt.dropped == 6 and prompt.messages[0]["role"] == "user"
    assert len(prompt.ids) <= limit


def test_fit_prompt_keeps_system_message_while_it_fits(tokenizer):
    system = {"role": "system", "content": "be brief"}
    msgs = [system, *_turns(5), {"role": "user", "content": "last"}]
    limit = len(render_prompt(tokenizer, [system, *msgs[7:]])) + 1
    prompt = fit(tokenizer, msgs, limit)
    assert prompt.messages == [system, *msgs[7:]] and prompt.dropped == 6
    prompt = fit(tokenizer, msgs, len(render_prompt(tokenizer, msgs[-1:])))
    assert prompt.messages == msgs[-1:] and prompt.dropped == len(msgs) - 1


def test_fit_prompt_keeps_the_answers_room(tokenizer):
    """The prompt leaves max_new_tokens free for the answer, but never more than ANSWER_RESERVE."""
    msgs = [{"role": "user", "content": "hi"}]
    assert fit_prompt(tokenizer, msgs, block_size=384, max_new_tokens=20).limit == 384 - 20
    assert fit_prompt(tokenizer, msgs, block_size=384, max_new_tokens=383).limit == 384 - ANSWER_RESERVE


def test_a_message_that_alone_does_not_fit_is_refused_with_its_size(tokenizer):
    long = {"role": "user", "content": "the cat sat on the mat " * 5}
    with pytest.raises(PromptTooLong) as info:
        fit(tokenizer, [long], 5)
    assert info.value.tokens == message_token_count(tokenizer, long) and info.value.limit == 4
    assert "Shorten it" in str(info.value)


def test_fit_prompt_counts_a_long_history_from_the_newest_back(tokenizer, monkeypatch):
    """An OpenAI-compatible client resends the whole conversation: only the newest messages are tokenized,
    until the window is full, and a message too long to fit at all is not tokenized."""
    from model import tokenizer as module

    msgs = [*_turns(5000), {"role": "user", "content": "last"}]
    expected = fit(tokenizer, msgs[-7:], 60)  # the same newest turns, from a short history
    counted = []
    real = module.message_token_count
    monkeypatch.setattr(module, "message_token_count", lambda tok, m: counted.append(m) or real(tok, m))
    prompt = fit(tokenizer, msgs, 60)
    assert (prompt.messages, prompt.ids) == (expected.messages, expected.ids)
    assert prompt.dropped == len(msgs) - len(prompt.messages)
    assert 0 < len(counted) < 20  # of 10,001 messages

    huge = {"role": "user", "content": "word " * 100_000}  # ~500,000 characters, far past 60 tokens
    encoded = []
    monkeypatch.setattr(tokenizer, "encode", lambda text: encoded.append(len(text)) or real_encode(text))
    real_encode = Tokenizer.encode.__get__(tokenizer)
    prompt = fit(tokenizer, [*msgs[:4], huge, *msgs[-5:]], 60)
    assert prompt.messages == msgs[-5:] and max(encoded) < 1000  # the huge one was skipped, never encoded
