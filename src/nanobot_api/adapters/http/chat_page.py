"""The chat page at ``/``: static files shipped inside the package, served as they are.

The page is a client of the public API like any other (see ``static/chat.js``), so
this module only hands out its three files. They never need a key (the page asks
for one when the API does), and a strict Content-Security-Policy keeps them to this
server: no script, style or connection goes anywhere else.
"""

from __future__ import annotations

from importlib.resources import files

from quart import Quart, Response

from nanobot_api.domain.errors import NotFound

_TYPES = {
    "index.html": "text/html; charset=utf-8",
    "chat.js": "text/javascript; charset=utf-8",
    "chat.css": "text/css; charset=utf-8",
}
_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self' data: blob:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # Small files that change with the package: always revalidated, never stale.
    "Cache-Control": "no-cache",
}


def install_chat_page(app: Quart) -> None:
    """Adds ``GET /`` (the page) and ``GET /static/<name>`` (its script and style)."""

    @app.get("/")
    async def chat_page() -> Response:
        return _file("index.html")

    @app.get("/static/<name>")
    async def chat_page_file(name: str) -> Response:
        if name not in _TYPES or name == "index.html":
            raise NotFound(f"No such file: /static/{name}")
        return _file(name)


def _file(name: str) -> Response:
    body = files("nanobot_api.adapters.http").joinpath("static", name).read_bytes()
    return Response(body, content_type=_TYPES[name], headers=_HEADERS)
