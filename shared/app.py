"""The app factory every function uses: error handlers, body limit, CORS, health, migrations on start.

A function contributes a `Component` (its router plus optional start-up, shutdown and readiness hooks);
the same components make a function's own app and the local router's combined app.
"""

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from sqlalchemy import text
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.database import dispose_engine, get_engine
from shared.errors import COMMON_ERRORS, error_body, install_error_handlers, internal_error
from shared.settings import get_settings

log = logging.getLogger("slm")


@dataclass
class Component:
    router: APIRouter
    startup: Callable[[], Awaitable[None]] | None = None
    shutdown: Callable[[], Awaitable[None]] | None = None
    # Readiness: a name and an async check returning (ok, detail) for /api/health.
    checks: dict[str, Callable[[], Awaitable[tuple[bool, str]]]] = field(default_factory=dict)
    middleware: Sequence[Callable[[ASGIApp], ASGIApp]] = ()  # pure ASGI middleware around the app
    # request paths allowed a larger body than SLM_MAX_BODY_BYTES, with their limit in bytes
    body_limits: Mapping[str, int] = field(default_factory=dict)


class BodyLimitMiddleware:
    """Refuses a request body over `max_bytes` with 413, declared (Content-Length) or streamed (chunked);
    a path in `paths` has its own limit instead."""

    def __init__(self, app: ASGIApp, max_bytes: int, paths: Mapping[str, int] | None = None) -> None:
        self.app, self.max_bytes, self.paths = app, max_bytes, dict(paths or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self.paths.get(scope["path"], self.max_bytes)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            return await self._refuse(scope, receive, send, limit)
        if declared is not None:  # within the limit, and the server enforces the declared length
            return await self.app(scope, receive, send)
        # Streamed (chunked) body: read it up to the limit before the app sees it, then replay it.
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return await self.app(scope, _replay([message]), send)
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            more = message.get("more_body", False)
            if size > limit:
                return await self._refuse(scope, receive, send, limit)
        body = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
        await self.app(scope, _replay([body], receive), send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        body = error_body("payload_too_large", f"Request body is larger than {limit} bytes")
        await JSONResponse(body, status_code=413)(scope, receive, send)


# What every answer carries. The app's pages get their own Content-Security-Policy (with the hashes of
# their inline scripts, infra/router); an API answer needs none of what a page does.
API_POLICY = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'"
SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cross-origin-opener-policy": "same-origin",
}


class SecurityHeadersMiddleware:
    """Browser security headers on every response (pages, API answers, errors, streams): nosniff, no
    framing, no referrer, and a Content-Security-Policy unless the response set its own."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                for name, value in SECURITY_HEADERS.items():
                    if name.encode() not in present:
                        headers.append((name.encode(), value.encode()))
                if b"content-security-policy" not in present:
                    headers.append((b"content-security-policy", API_POLICY.encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


class UnhandledErrorMiddleware:
    """The 500 for an exception no handler took, sent from inside every other middleware so that it carries
    their headers (the security headers, CORS) as every other answer does: Starlette sends the answer of
    a handler for Exception from its outermost layer, past all of them. An exception after the answer
    started goes on to that layer, as before (the stream is cut; nothing else can be sent)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = False

        async def send_marking(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, send_marking)
        except Exception as exc:
            if started:
                raise
            await internal_error(exc)(scope, receive, send)


def _replay(messages: list[Message], then: Receive | None = None) -> Receive:
    """A receive() that returns the buffered messages first, then defers to the real one."""

    async def receive() -> Message:
        if messages:
            return messages.pop(0)
        if then is None:
            return {"type": "http.disconnect"}
        return await then()

    return receive


async def database_check() -> tuple[bool, str]:
    try:
        async with get_engine().connect() as connection:
            await connection.execute(text("SELECT 1"))
        return True, "ok"
    except Exception as exc:  # any failure means "not reachable"; the detail goes to the caller
        return False, f"unreachable: {type(exc).__name__}"


def create_app(title: str, components: Sequence[Component]) -> FastAPI:
    settings = get_settings()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if settings.migrate_on_start:
            from shared.migrate import upgrade

            await asyncio.to_thread(upgrade)
        for component in components:
            if component.startup:
                await component.startup()
        yield
        for component in components:
            if component.shutdown:
                await component.shutdown()
        await dispose_engine()

    app = FastAPI(
        title=title,
        lifespan=lifespan,
        docs_url=None,  # served from local files below, never from a CDN on the app's origin
        openapi_url="/api/openapi.json",
        redoc_url=None,
        responses=COMMON_ERRORS,
    )
    install_error_handlers(app)
    checks: dict[str, Callable[[], Awaitable[tuple[bool, str]]]] = {"database": database_check}
    for component in components:
        checks.update(component.checks)
        app.include_router(component.router)

    @app.get("/api/health", tags=["health"], summary="Liveness and readiness (database, model)")
    async def read_health() -> JSONResponse:
        results = dict(
            zip(checks, await asyncio.gather(*(check() for check in checks.values())), strict=True)
        )
        ok = all(passed for passed, _ in results.values())
        body: dict[str, Any] = {"status": "ok" if ok else "unavailable", "service": title}
        body["checks"] = {name: detail for name, (_, detail) in results.items()}
        if not ok:
            failing = ", ".join(f"{n}: {d}" for n, (p, d) in results.items() if not p)
            body.update(error_body("not_ready", f"Not ready: {failing}"))
        return JSONResponse(body, status_code=200 if ok else 503)

    # uptime monitors often ask with HEAD: the same checks and status, no body (left out of the schema, so
    # the route table that nginx and template.yaml follow is unchanged)
    app.add_api_route("/api/health", read_health, methods=["HEAD"], include_in_schema=False)

    # innermost of the middleware (each added one wraps the ones before it)
    app.add_middleware(UnhandledErrorMiddleware)
    if settings.cors_origin:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=[settings.cors_origin],
            allow_credentials=True,
            allow_methods=["*"],
            # any request header from that one origin: the OpenAI JavaScript SDK, run in a browser against
            # /v1, sends its own (x-stainless-os, x-stainless-lang, ...), which a preflight refused with 400
            allow_headers=["*"],
        )
    if settings.env != "production":
        serve_docs(app)
    for component in components:
        for middleware in component.middleware:
            app.add_middleware(middleware)
    body_limits = {path: n for component in components for path, n in component.body_limits.items()}
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes, paths=body_limits)
    app.add_middleware(SecurityHeadersMiddleware)  # outermost: every answer, errors included
    return app


DOCS_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title} API</title>
<link rel="stylesheet" href="/api/docs/assets/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="/api/docs/assets/swagger-ui-bundle.js"></script>
<script src="/api/docs/init.js"></script></body></html>
"""
DOCS_INIT = """SwaggerUIBundle({url: "/api/openapi.json", dom_id: "#swagger-ui", deepLinking: true});\n"""
DOCS_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'self'; frame-ancestors 'none'"
)


def serve_docs(app: FastAPI) -> None:
    """Interactive docs at /api/docs outside production, from the swagger-ui-bundle package's own files
    (a development requirement): no script from another origin, none inline. Off in production."""
    try:
        from swagger_ui_bundle import swagger_ui_path
    except ImportError:
        return
    from fastapi.responses import HTMLResponse, Response
    from fastapi.staticfiles import StaticFiles

    app.mount("/api/docs/assets", StaticFiles(directory=swagger_ui_path), name="docs-assets")

    @app.get("/api/docs", include_in_schema=False)
    async def read_docs() -> HTMLResponse:
        return HTMLResponse(
            DOCS_PAGE.format(title=app.title), headers={"Content-Security-Policy": DOCS_POLICY}
        )

    @app.get("/api/docs/init.js", include_in_schema=False)
    async def read_docs_init() -> Response:
        return Response(DOCS_INIT, media_type="text/javascript")
