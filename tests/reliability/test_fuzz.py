"""Schemathesis against the router's own OpenAPI schema, in-process, on SQLite and PostgreSQL.

Every route is fuzzed with data that fits the schema (positive) and data that does not (negative),
with a valid bearer token. Each response must pass schemathesis's checks (no 5xx, status code, content
type, headers and body as documented, invalid input refused, valid input accepted), and every error
must have the one error shape. The chat routes stream for real, with at most a few new tokens.
(schemathesis's `ignored_auth` check re-sends over the network, which an in-process app cannot answer;
test_abuse.py sends bad tokens to every authenticated route instead.)
"""

from collections import Counter
from typing import Any, TypeGuard

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import ignored_auth, negative_data_rejection, positive_data_acceptance

from tests.helpers import register
from tests.reliability.conftest import backend, record

pytestmark = pytest.mark.slow
EXAMPLES = 75  # per route and mode: 23 routes x 2 modes x 75 > 3,000 requests per backend
FEW_TOKENS = 4  # generation is real, so valid chat requests ask for only a few tokens
TOKEN_FIELDS = {  # each route's answer-length fields, and the end of their valid range
    "/api/chat": (("max_new_tokens",), 384),
    "/v1/chat/completions": (("max_tokens", "max_completion_tokens"), 2**31),  # kept within the window
}


def adjust(case: Any) -> None:
    """Valid chat bodies generate at most FEW_TOKENS tokens, so the fuzzing stays quick; a valid password
    is cut to 72 UTF-8 bytes (whole characters), the limit that JSON Schema cannot state (maxLength counts
    characters; tests/functions/test_auth.py covers the refusal over 72 bytes)."""
    body = case.body
    field = {"/api/auth/register": "password", "/api/auth/password": "new_password"}.get(case.operation.path)
    if field and isinstance(body, dict):
        password = body.get(field)
        if isinstance(password, str) and 8 <= len(password) <= 72:
            while len(password.encode()) > 72:
                password = password[:-1]
            body[field] = password
    names, end = TOKEN_FIELDS.get(case.operation.path, ((), 0))
    for name in names if isinstance(body, dict) else ():
        value = body.get(name)
        if value is None:
            body[name] = FEW_TOKENS
        elif isinstance(value, int | float) and not isinstance(value, bool) and value in range(1, end):
            body[name] = min(value, FEW_TOKENS)  # 7.0 (an integer to JSON Schema) becomes 4
    least = body.get("min_new_tokens") if isinstance(body, dict) else None
    most = body.get("max_new_tokens", FEW_TOKENS) if isinstance(body, dict) else None
    if _number(least) and least in range(0, 384) and _number(most):  # a malformed most: a 422 anyway
        body["min_new_tokens"] = min(least, most)  # at most the most


def _number(value: Any) -> TypeGuard[int | float]:
    """A JSON number (not a boolean, which Python counts as an int)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


# Refusals of schema-valid input for rules that JSON Schema cannot state: a message within the character
# limit but over the model's token window, and a message order the chat format cannot render.
UNSTATED_RULES = ("message_too_long", "context_length_exceeded", "invalid_messages")


def unstated_rule(response: Any) -> bool:
    if response.status_code not in (400, 422):
        return False
    return response.json().get("error", {}).get("code") in UNSTATED_RULES


def too_large(response: Any) -> bool:
    """The body limit (SLM_MAX_BODY_BYTES, 64 KiB), a rule in bytes that JSON Schema cannot state either: a
    413 refuses the request whether or not the body also broke the schema (a message of 16,000 escaped
    characters can be 96 KB of JSON)."""
    return response.status_code == 413 and response.json()["error"]["code"] == "payload_too_large"


def assert_error_shape(response: Any) -> None:
    if response.status_code < 400:
        return
    body = response.json()
    error = body.get("error")
    assert isinstance(error, dict), f"{response.status_code} without the error shape: {response.text[:300]}"
    assert isinstance(error.get("code"), str) and error["code"], response.text[:300]
    assert isinstance(error.get("message"), str) and error["message"], response.text[:300]
    assert set(error) <= {"code", "message", "fields", "assistant_message_id"}, response.text[:300]


def assert_stream_completes(response: Any) -> None:
    """A chat stream that started ends with `done` (an `error` event is a failure hidden behind a 200)."""
    if response.status_code != 200 or not response.headers["content-type"].startswith("text/event-stream"):
        return
    last = [line for line in response.text.splitlines() if line.startswith(("event:", "data:"))][-2:]
    assert last[0] == "event: done" or last[-1] == "data: [DONE]", response.text[-500:]


def send(client: TestClient, case: Any, headers: dict[str, str]) -> Any:
    kwargs = case.as_transport_kwargs(base_url=str(client.base_url), headers=headers)
    data = kwargs.pop("data", None)
    return client.request(
        kwargs.pop("method"),
        kwargs.pop("url"),
        params=kwargs.get("params"),
        headers=kwargs.get("headers"),
        cookies=kwargs.get("cookies") or None,
        json=kwargs.get("json"),
        content=data.encode() if isinstance(data, str) else data,
    )


# routes whose success refuses the fuzzing account's token from then on
REVOKING = {("POST", "/api/auth/logout"), ("POST", "/api/auth/password"), ("DELETE", "/api/auth/me")}


def fuzz(
    client: TestClient, operation: Any, mode: GenerationMode, headers: dict[str, str], tally: Counter
) -> None:
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(mode))
    def run(case: Any) -> None:
        adjust(case)
        # a case whose point is a missing or broken Authorization header is sent as generated
        negated = operation.schema.is_security_param_negated(case)
        response = send(client, case, {} if negated else headers)
        if response.status_code < 300 and (operation.method.upper(), operation.path) in REVOKING:
            headers.update(register(client).headers)  # that token is no longer valid: fuzz on with a new one
        tally[f"{operation.method.upper()} {operation.path}"] += 1
        tally[f"status {response.status_code}"] += 1
        excluded = [ignored_auth, *([positive_data_acceptance] if unstated_rule(response) else [])]
        if too_large(response):
            excluded += [positive_data_acceptance, negative_data_rejection]
        case.validate_response(response, headers=headers, excluded_checks=excluded)
        assert_error_shape(response)
        assert_stream_completes(response)

    try:
        run()
    except Unsatisfiable:  # a route with no input but the token has no schema-violating request to make
        assert mode == GenerationMode.NEGATIVE, f"no valid request for {operation.path}"


def test_fuzz_every_route_without_5xx_and_as_documented(router_client: TestClient) -> None:
    account = register(router_client)
    for title in ("first", "second"):  # something for the id-taking routes to find
        router_client.post("/api/conversations", json={"title": title}, headers=account.headers)
    assert router_client.get("/api/model", headers=account.headers).status_code == 200  # waits for the model
    headers = account.headers  # one dict: a route that revokes the token puts a fresh one in it
    schema = schemathesis.openapi.from_dict(router_client.app.openapi())
    operations = [result.ok() for result in schema.get_all_operations()]
    tally: Counter = Counter()
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            fuzz(router_client, operation, mode, headers, tally)
    routes = {name: n for name, n in tally.items() if not name.startswith("status ")}
    statuses = {name: n for name, n in tally.items() if name.startswith("status ")}
    total = sum(routes.values())
    record(f"fuzz-{backend()}", {"requests": total, "routes": routes, "statuses": statuses})
    assert len(routes) == len(operations) == 23
    assert total >= 2000
    assert not any(name.startswith("status 5") for name in statuses)
