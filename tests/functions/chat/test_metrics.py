"""GET /metrics: the chat function's Prometheus metrics, scraped as a Prometheus server would."""

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import register

pytestmark = pytest.mark.slow


def scrape(client: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """{(sample name, labels): value} of one scrape, parsed with Prometheus's own text parser."""
    response = client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain; version=")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def test_a_scrape_counts_the_tokens_their_timing_the_scheduler_and_the_requests(client: TestClient) -> None:
    user = register(client)
    before = scrape(client)
    body = {"conversation_id": None, "message": "Hello!", "max_new_tokens": 6, "min_new_tokens": 6}
    with client.stream("POST", "/api/chat", json=body, headers=user.headers) as response:
        assert response.status_code == 200 and "event: done" in response.read().decode()
    completion = {"model": "slm", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3}
    assert client.post("/v1/chat/completions", json=completion, headers=user.headers).status_code == 200
    assert client.get("/api/conversations/999999", headers=user.headers).status_code == 404
    after = scrape(client)

    def grew(name: str, labels: tuple[tuple[str, str], ...] = ()) -> float:
        return after[(name, labels)] - before.get((name, labels), 0.0)

    assert grew("slm_generated_tokens_total") >= 6 + 1  # the chat's 6, and at least 1 of /v1's
    assert grew("slm_time_to_first_token_seconds_count") == 2  # one first token per answer
    assert grew("slm_inter_token_latency_seconds_count") >= 5
    assert ("slm_queue_depth", ()) in after and ("slm_streams_in_flight", ()) in after
    chat = (("method", "POST"), ("route", "/api/chat"), ("status", "200"))
    missing = (("method", "GET"), ("route", "/api/conversations/{conversation_id}"), ("status", "404"))
    assert grew("slm_http_requests_total", chat) == 1 and grew("slm_http_requests_total", missing) == 1
    assert not any("999999" in str(labels) for _, labels in after)  # route templates, never raw paths


def test_metrics_are_off_on_lambda_unless_turned_on(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Function URL is public: on Lambda /metrics is a 404 unless SLM_METRICS=on; SLM_METRICS=off hides it
    anywhere. It is never in the API's schema (the route table that template.yaml and nginx follow)."""
    from shared.settings import get_settings

    assert "/metrics" not in client.get("/api/openapi.json").json()["paths"]
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "slm-chat")
    assert client.get("/metrics").status_code == 404
    for setting, status in (("on", 200), ("off", 404)):
        monkeypatch.setenv("SLM_METRICS", setting)
        get_settings.cache_clear()
        assert client.get("/metrics").status_code == status
    monkeypatch.delenv("SLM_METRICS")
    get_settings.cache_clear()


def test_the_token_clock_times_tokens_as_the_scheduler_produced_them() -> None:
    """First token from the request's arrival, then the gaps between tokens: the times the events carry,
    not when the paced stream delivered them together."""
    from functions.chat.metrics import REGISTRY, TokenClock

    def total(name: str) -> float:
        return REGISTRY.get_sample_value(name) or 0.0

    first, between = (
        total("slm_time_to_first_token_seconds_sum"),
        total("slm_inter_token_latency_seconds_sum"),
    )
    counted = total("slm_inter_token_latency_seconds_count")
    clock = TokenClock(arrived=100.0)
    for at in (100.25, 100.5, 101.0):  # delivered together, produced a quarter and half a second apart
        clock.token(at)
    assert total("slm_time_to_first_token_seconds_sum") - first == pytest.approx(0.25)
    assert total("slm_inter_token_latency_seconds_sum") - between == pytest.approx(0.75)
    assert total("slm_inter_token_latency_seconds_count") - counted == 2
