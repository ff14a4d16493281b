"""The app factory every function uses: error handlers, body limit, CORS, health, migrations on start.

A function contributes a `Component` (its router plus optional start-up, shutdown and readiness hooks);
the same components make a function's own app and the local router's combined app.
"""

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from sqlalchemy import text
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.database import dispose_engine, get_engine
from shared.errors import COMMON_ERRORS, error_body, install_error_handlers
from shared.settings import get_settings

log = logging.getLogger("slm")


@dataclass
class Component:
    router: APIRouter
    startup: Callable[[], Awaitable[None]] | None = None
    shutdown: Callable[[], Awaitable[None]] | None = None
    # Readiness: a name and an async check returning (ok, detail) for /api/health.
    checks: dict[str, Callable[[], Awaitable[tuple[bool, str]]]] = field(default_factory=dict)


class BodyLimitMiddleware:
    """Refuses a request body over `max_bytes` with 413, declared (Content-Length) or streamed (chunked)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            return await self._refuse(scope, receive, send)
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
            if size > self.max_bytes:
                return await self._refuse(scope, receive, send)
        body = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
        await self.app(scope, _replay([body], receive), send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = error_body("payload_too_large", f"Request body is larger than {self.max_bytes} bytes")
        await JSONResponse(body, status_code=413)(scope, receive, send)


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
        docs_url="/api/docs",
        openapi_url="/api/openapi.json",
        swagger_ui_oauth2_redirect_url="/api/docs/oauth2-redirect",
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

    if settings.cors_origin:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=[settings.cors_origin],
            allow_credentials=True,
            allow_methods=["*"],
            allow_headers=["Authorization", "Content-Type"],
        )
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    return app
