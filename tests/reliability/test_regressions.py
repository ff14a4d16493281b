"""Regression tests for what the fuzzing and fault tests found, one per fix."""

import re

import numpy as np
import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from functions.chat.schemas import ChatCreate, CompletionCreate
from model.sampling import SamplingParams, new_generator, sample_next_token
from shared.schemas import EMAIL_PATTERN, NOT_BLANK, ConversationCreate, UserCreate
from tests.helpers import make_client, register


@pytest.mark.parametrize("params", [SamplingParams(temperature=1e-300), SamplingParams(top_p=1e-50)])
def test_tiny_temperature_or_top_p_samples_the_top_token(params: SamplingParams) -> None:
    logits = np.random.default_rng(0).standard_normal((3, 50)).astype(np.float32) * 30
    tokens = sample_next_token(logits, params, new_generator(0))
    assert tokens.tolist() == logits.argmax(-1).tolist()  # was: inf/nan probabilities, a failed stream


@pytest.mark.parametrize("field", ["seed", "top_k", "max_new_tokens", "temperature", "conversation_id"])
@pytest.mark.parametrize("value", [True, "5"])
def test_chat_numbers_refuse_booleans_and_strings(field: str, value: object) -> None:
    with pytest.raises(ValidationError):  # lax mode read `true` as 1
        ChatCreate.model_validate({"message": "hi", field: value})


def test_chat_and_completion_numbers_accept_whole_floats_as_json_schema_does() -> None:
    assert ChatCreate.model_validate({"message": "hi", "seed": 5.0, "max_new_tokens": 4.0}).seed == 5
    body = {"model": "slm", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3.0}
    assert CompletionCreate.model_validate(body).max_tokens == 3
    with pytest.raises(ValidationError):
        CompletionCreate.model_validate({**body, "stream": 1})


def test_password_minimum_counts_characters_as_the_message_says() -> None:
    with pytest.raises(ValidationError, match="at least 8 characters"):
        UserCreate.model_validate(
            {"email": "a@example.com", "password": "密码密码"}
        )  # 12 bytes, 4 characters
    UserCreate.model_validate({"email": "a@example.com", "password": "密码密码密码密码"})


@pytest.mark.parametrize(
    "email",
    ["a@b.co", " a@b.co ", "\x85a@b.co\u3000", "a\x85b@c.de", "a@b\u00a0.co", "a@b", "a\x00@b.co", "ä@ö.ü"],
)
def test_the_documented_email_pattern_is_what_the_api_accepts(email: str) -> None:
    documented = re.fullmatch(EMAIL_PATTERN, email) is not None
    try:
        UserCreate.model_validate({"email": email, "password": "correct horse"})
        accepted = True
    except ValidationError:
        accepted = False
    assert documented == accepted


@pytest.mark.parametrize("title", ["x", "  x ", "\x85\u3000", " ", "a\x00b", "\u2028y"])
def test_the_documented_title_pattern_is_what_the_api_accepts(title: str) -> None:
    documented = re.search(str(NOT_BLANK["pattern"]), title) is not None
    try:
        ConversationCreate.model_validate({"title": title})
        accepted = True
    except ValidationError:
        accepted = False
    assert documented == accepted


def test_nul_in_stored_or_searched_text_is_422_not_a_database_error(client: TestClient) -> None:
    user = register(client)
    nul = "a\x00b"
    responses = [
        client.post("/api/auth/register", json={"email": f"{nul}@example.com", "password": "correct horse"}),
        client.post("/api/auth/login", json={"email": f"{nul}@example.com", "password": "correct horse"}),
        client.post("/api/conversations", json={"title": nul}, headers=user.headers),
        client.get("/api/conversations", params={"q": nul}, headers=user.headers),
        client.post("/api/chat", json={"message": nul}, headers=user.headers),
    ]
    assert [r.status_code for r in responses] == [422] * 5, [r.text for r in responses]
    assert all(r.json()["error"]["code"] == "validation_error" for r in responses)


def test_openapi_documents_error_statuses_with_the_error_shape(client: TestClient) -> None:
    paths = client.get("/api/openapi.json").json()["paths"]
    error = {"$ref": "#/components/schemas/ErrorPublic"}
    read = paths["/api/conversations/{conversation_id}"]["get"]["responses"]
    assert {"401", "404", "422", "503"} <= set(read)
    assert read["422"]["content"]["application/json"]["schema"] == error  # was FastAPI's {"detail": [...]}
    assert {"401", "429"} <= set(paths["/api/auth/login"]["post"]["responses"])
    assert "409" in paths["/api/auth/register"]["post"]["responses"]


def test_a_second_app_start_in_one_process_still_chats(use_database: str) -> None:
    """The model is shared by the process; a shutdown closed its scheduler and a restart queued forever."""
    from infra.router.app import app

    for _ in range(2):
        with make_client(app, use_database) as client:
            user = register(client)
            body = {"message": "Hi", "max_new_tokens": 2}
            response = client.post("/api/chat", json=body, headers=user.headers)
            assert response.status_code == 200 and "event: done" in response.text
            bad = {
                "model": "slm",
                "messages": [{"role": "user", "content": "x"}, {"role": "system", "content": "y"}],
            }
            refused = client.post("/v1/chat/completions", json=bad, headers=user.headers)
            assert refused.status_code == 400 and refused.json()["error"]["code"] == "invalid_messages"
