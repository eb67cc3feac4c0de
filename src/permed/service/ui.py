"""The browser UI: static files (HTML, JS, CSS; no build step, no CDN) served by the API process.

The UI signs in with an API token kept in the tab's sessionStorage and calls the same /api/v1 routes
as any other client. A strict Content-Security-Policy keeps scripts to our own file; the report is
shown in a sandboxed frame (no scripts, no access to the UI or its token).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles

UI_DIR = Path(__file__).parent / "static"
# the report's own inline <style> needs 'unsafe-inline' for styles; scripts are only our ui.js
CSP = ("default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
       "connect-src 'self'; frame-src 'self' blob:; form-action 'none'; base-uri 'none'; frame-ancestors 'none'")


class _UiFiles(StaticFiles):
    async def get_response(self, path, scope):
        response = await super().get_response(path, scope)
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["Cache-Control"] = "no-cache"
        return response


def mount_ui(app: FastAPI) -> None:
    app.mount("/ui", _UiFiles(directory=UI_DIR, html=True), name="ui")

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/ui/")
