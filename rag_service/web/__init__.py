"""The browser chat page: ``GET /`` and its static assets under ``/web/``.

The page is plain HTML (``index.html``) with CSS and JavaScript modules in ``static/`` (no build
step, nothing from a CDN); docs/web.md describes it. ``install_web_page(app)`` is called by ``create_app``.

Why not one ``StaticFiles`` mount at ``/``: a mount there matches every path, so an unknown
path would reach it instead of the router's 404, and a known path with the wrong method (``GET
/rag/stream``) would become the mount's 404 instead of the router's 405. So ``/`` is one route
and the assets are a mount under ``/web``; neither is in the OpenAPI schema.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from starlette.responses import FileResponse
from starlette.staticfiles import StaticFiles

__all__ = ["install_web_page"]

STATIC_DIR = Path(__file__).with_name("static")
ASSETS_PATH = "/web"

# The page runs only its own scripts and styles and talks only to its own origin: model output
# that slipped past the renderer still could not load or run anything.
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def install_web_page(app: FastAPI) -> None:
    """Serve the chat page at ``/`` and its assets at ``/web/...``."""
    index = Path(__file__).with_name("index.html")  # not under /web: its links are relative to /

    @app.get("/", include_in_schema=False)
    async def chat_page() -> FileResponse:
        return FileResponse(index, media_type="text/html; charset=utf-8", headers=PAGE_HEADERS)

    app.mount(ASSETS_PATH, StaticFiles(directory=STATIC_DIR), name="web")
