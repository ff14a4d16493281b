"""bench/serve.py's request bodies: --sampling app asks for exactly what a request naming no sampling gets
(read from the request schema, not copied), and every body is one POST /api/chat accepts."""

import pytest

from bench import serve
from functions.chat.schemas import ChatCreate, sampling_params


@pytest.fixture
def sampling():
    saved = dict(serve.SAMPLING)
    yield serve.SAMPLING
    serve.SAMPLING.clear()
    serve.SAMPLING.update(saved)


def test_app_sampling_is_what_a_request_naming_none_gets(sampling):
    sampling.update(serve.app_sampling())
    body = serve.chat_body(tokens=16, seed=3)
    asked = sampling_params(ChatCreate.model_validate(body))
    bare = sampling_params(ChatCreate.model_validate({"message": serve.PROMPT}))
    assert (asked.temperature, asked.top_k, asked.top_p) == (bare.temperature, bare.top_k, bare.top_p)
    assert (asked.max_new_tokens, asked.min_new_tokens, asked.seed) == (16, 16, 3)


def test_the_default_is_the_whole_softmax_at_temperature_one(sampling):
    asked = sampling_params(ChatCreate.model_validate(serve.chat_body(tokens=8, seed=0)))
    assert (asked.temperature, asked.top_k, asked.top_p) == (1.0, 0, 1.0)
