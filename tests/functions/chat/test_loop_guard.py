"""The chat function's loop guard setting (SLM_CHAT_LOOP_GUARD_WORDS); the guard itself: tests/model/test_loops.py."""

import pytest

from functions.chat.schemas import ChatCreate, CompletionCreate, sampling_params
from shared.settings import get_settings


def test_both_chat_routes_ask_for_the_configured_guard(monkeypatch: pytest.MonkeyPatch) -> None:
    """/api/chat and /v1 turn their bodies into SamplingParams in one place, with the server's guard."""
    chat = ChatCreate(message="Hello!", temperature=0)
    completion = CompletionCreate(model="slm", messages=[{"role": "user", "content": "Hello!"}])
    get_settings.cache_clear()
    try:
        assert sampling_params(chat).no_repeat_ngram == sampling_params(completion).no_repeat_ngram == 3
        monkeypatch.setenv("SLM_CHAT_LOOP_GUARD_WORDS", "0")
        get_settings.cache_clear()
        assert sampling_params(chat).no_repeat_ngram == sampling_params(completion).no_repeat_ngram == 0
    finally:
        monkeypatch.delenv("SLM_CHAT_LOOP_GUARD_WORDS")
        get_settings.cache_clear()
