"""Prometheus metrics of the chat function (prometheus-client), served at GET /metrics for an operator's
scraper: tokens generated, time to first token and between tokens, the scheduler's queue and streams in
flight, and requests by route and status.

/metrics is for the private side only: nginx answers it with 404 on the public side, and on AWS Lambda
(a Function URL is public) it is off unless SLM_METRICS=on. It is left out of the OpenAPI schema, so it is
no part of the API's route table.
"""

import os
from collections.abc import Callable

from fastapi import APIRouter, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.errors import error_response
from shared.settings import get_settings

REGISTRY = CollectorRegistry()  # this function's own: nothing of the process's other libraries
TOKENS = Counter("slm_generated_tokens", "Tokens generated (/api/chat and /v1)", registry=REGISTRY)
FIRST_TOKEN = Histogram(
    "slm_time_to_first_token_seconds",
    "From the request's arrival to its answer's first token",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=REGISTRY,
)
BETWEEN_TOKENS = Histogram(
    "slm_inter_token_latency_seconds",
    "Between two tokens of one answer, as the model produced them",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1),
    registry=REGISTRY,
)
QUEUE_DEPTH = Gauge("slm_queue_depth", "Answers waiting for a slot of the scheduler", registry=REGISTRY)
IN_FLIGHT = Gauge("slm_streams_in_flight", "Answers being generated (one slot each)", registry=REGISTRY)
REQUESTS = Counter(
    "slm_http_requests", "HTTP requests by route and status", ["method", "route", "status"], registry=REGISTRY
)


def enabled() -> bool:
    """SLM_METRICS: on, off, or auto (the default: on, except on AWS Lambda, where a Function URL is public)."""
    setting = get_settings().metrics
    return setting == "on" or (setting == "auto" and not os.environ.get("AWS_LAMBDA_FUNCTION_NAME"))


def watch_scheduler(depth: Callable[[], int], in_flight: Callable[[], int]) -> None:
    """The gauges read the loaded model's scheduler when scraped."""
    QUEUE_DEPTH.set_function(depth)
    IN_FLIGHT.set_function(in_flight)


class TokenClock:
    """One answer's token times: when the scheduler produced each (the stream delivers further tokens
    together, at most every functions/chat/outbox.py's TOKEN_INTERVAL_SECONDS, so their arrival times
    would measure that pacing, not the model)."""

    def __init__(self, arrived: float) -> None:
        self.arrived = arrived
        self.last: float | None = None

    def token(self, at: float) -> None:
        """A token the scheduler produced at time.perf_counter() `at`."""
        TOKENS.inc()
        if self.last is None:
            FIRST_TOKEN.observe(at - self.arrived)
        else:
            BETWEEN_TOKENS.observe(at - self.last)
        self.last = at


class RequestMetrics:
    """Counts each request by method, route template (never the raw path: ids would make every request a
    series of its own) and status."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        status = 500

        async def counted(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, counted)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            REQUESTS.labels(scope["method"], route, str(status)).inc()


router = APIRouter()


@router.get("/metrics", include_in_schema=False)
async def read_metrics() -> Response:
    """The Prometheus text format; 404 where metrics are off."""
    if not enabled():
        return error_response(404, "not_found", "No such route")
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
