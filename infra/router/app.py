"""The local router: every function's router in one app, plus the built frontend, on http://localhost:8000.

uvicorn infra.router.app:app --port 8000      (what `make run` starts)
"""

import json
import logging
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, Response
from starlette.routing import Match
from starlette.types import Scope

from functions.auth.app import component as auth
from functions.chat.app import component as chat
from functions.conversations.app import component as conversations
from shared.app import create_app
from shared.errors import error_response
from shared.settings import get_settings

API_PREFIXES = ("api/", "v1/")
log = logging.getLogger("slm")


def route_table(app: FastAPI) -> set[tuple[str, str]]:
    """Every (METHOD, path) the app serves, from its OpenAPI schema (what nginx and template.yaml must match)."""
    paths = app.openapi()["paths"]
    return {(method.upper(), path) for path, item in paths.items() for method in item}


def page_policy(root: Path) -> str:
    """The pages' Content-Security-Policy, written beside them by the frontend's build (frontend/scripts/
    csp.mjs: scripts from this origin and the export's own inline scripts, by hash)."""
    try:
        return str(json.loads((root / "_csp.json").read_text())["policy"])
    except (OSError, ValueError, KeyError):
        log.warning("%s/_csp.json is missing: rebuild the frontend (make frontend)", root)
        return "default-src 'self'; script-src 'self'; object-src 'none'; base-uri 'self'; frame-ancestors 'none'"


def _file(root: Path, candidate: str) -> Path | None:
    """root/candidate when it is a file inside root (a name the file system refuses is no file)."""
    try:
        file = (root / candidate).resolve()
        return file if file.is_file() and file.is_relative_to(root) else None
    except (OSError, ValueError):
        return None


METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


def served_methods(scope: Scope, skip: tuple[object, ...]) -> set[str]:
    """The methods that the app's routes (but the endpoints in `skip`) serve at this request's path: each
    one that some route matches in full, asked with that method instead."""
    routes = [r for r in scope["app"].router.routes if getattr(r, "endpoint", None) not in skip]
    return {m for m in METHODS if any(r.matches({**scope, "method": m})[0] is Match.FULL for r in routes)}


def serve_frontend(app: FastAPI, root: Path) -> None:
    """Serve Next.js's static export: /chat -> chat.html, /x/ -> x/index.html, unknown -> 404.html; every
    page with its Content-Security-Policy."""
    root = root.resolve()
    policy = page_policy(root) if root.is_dir() else ""

    # HEAD too: Next's prefetch and uptime checks send it
    @app.api_route("/{path:path}", methods=["GET", "HEAD"], include_in_schema=False)
    async def read_frontend(path: str, request: Request) -> Response:
        if "\x00" in path:
            return error_response(404, "not_found", "No such route")
        if path.startswith(API_PREFIXES) or path in ("api", "v1"):
            # a function's path asked with GET (POST /api/chat's): a 405, as from that function alone
            return await no_such_route(path, request)
        if not root.is_dir():
            return error_response(404, "frontend_not_built", "The frontend is not built: run `make frontend`")
        path = path.strip("/")
        for candidate in (path, f"{path}.html", f"{path}/index.html" if path else "index.html"):
            if (file := _file(root, candidate)) is not None:
                return _page(file)
        if (missing := _file(root, "404.html")) is not None:
            return _page(missing, status_code=404)
        return error_response(404, "not_found", "No such page")

    # any other method: a path no function serves is a 404, as through nginx or a function alone (without
    # this route, the GET catch-all above matched every path but for its method: a 405 for POST /api/nope)
    @app.api_route(
        "/{path:path}", methods=["POST", "PUT", "PATCH", "DELETE", "OPTIONS"], include_in_schema=False
    )
    async def no_such_route(path: str, request: Request) -> Response:
        """A 405 with `Allow` where a function serves the path with other methods (an API path) or a page
        is asked for with a method other than GET or HEAD; a 404 where nothing is served at the path."""
        api = path.startswith(API_PREFIXES) or path in ("api", "v1")
        allowed = (
            served_methods(request.scope, skip=(read_frontend, no_such_route)) if api else {"GET", "HEAD"}
        )
        if not allowed:
            return error_response(404, "not_found", "No such route")
        allow = {"Allow": ", ".join(sorted(allowed))}
        return error_response(405, "method_not_allowed", "Method not allowed on this route", headers=allow)

    def _page(file: Path, status_code: int = 200) -> FileResponse:
        headers = {"Content-Security-Policy": policy} if file.suffix == ".html" else None
        return FileResponse(file, status_code=status_code, headers=headers)


app = create_app("slm", [auth, conversations, chat])
serve_frontend(app, get_settings().frontend_dir)
