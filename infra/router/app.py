"""The local router: every function's router in one app, plus the built frontend, on http://localhost:8000.

uvicorn infra.router.app:app --port 8000      (what `make run` starts)
"""

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, Response

from functions.auth.app import component as auth
from functions.chat.app import component as chat
from functions.conversations.app import component as conversations
from shared.app import create_app
from shared.errors import error_response
from shared.settings import get_settings

API_PREFIXES = ("api/", "v1/")


def route_table(app: FastAPI) -> set[tuple[str, str]]:
    """Every (METHOD, path) the app serves, from its OpenAPI schema (what nginx and template.yaml must match)."""
    paths = app.openapi()["paths"]
    return {(method.upper(), path) for path, item in paths.items() for method in item}


def serve_frontend(app: FastAPI, root: Path) -> None:
    """Serve Next.js's static export: /chat -> chat.html, /x/ -> x/index.html, unknown -> 404.html."""
    root = root.resolve()

    # HEAD too: Next's prefetch and uptime checks send it
    @app.api_route("/{path:path}", methods=["GET", "HEAD"], include_in_schema=False)
    async def read_frontend(path: str, request: Request) -> Response:
        if path.startswith(API_PREFIXES) or path in ("api", "v1"):
            return error_response(404, "not_found", "No such route")
        if not root.is_dir():
            return error_response(404, "frontend_not_built", "The frontend is not built: run `make frontend`")
        path = path.strip("/")
        for candidate in (path, f"{path}.html", f"{path}/index.html" if path else "index.html"):
            file = (root / candidate).resolve()
            if file.is_file() and file.is_relative_to(root):
                return FileResponse(file)
        missing = root / "404.html"
        if missing.is_file():
            return FileResponse(missing, status_code=404)
        return error_response(404, "not_found", "No such page")


app = create_app("slm", [auth, conversations, chat])
serve_frontend(app, get_settings().frontend_dir)
