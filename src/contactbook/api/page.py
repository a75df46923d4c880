"""The search page: `GET /` and its static files under `/static/`, with security headers.

Wiring: `app.include_router(page.router)`. It is a router rather than a `StaticFiles`
mount so that the headers below apply to every file it serves, and so that only the
files that ship in `contactbook/web/` can be asked for (no path is ever joined from
the URL).

The page needs no inline script or style, so the Content-Security-Policy allows
same-origin resources only; the one `data:` image is the favicon.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse

WEB_DIR = Path(__file__).resolve().parent.parent / "web"

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)

SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # Revalidate on every load (cheap: ETag / Last-Modified), so a deploy shows at once.
    "Cache-Control": "no-cache",
}

_MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
}

# Every file the page may load, named up front: a request can only pick one of these.
STATIC_FILES = {
    path.name: path
    for path in sorted(WEB_DIR.glob("*"))
    if path.is_file() and path.suffix in _MEDIA_TYPES and path.name != "index.html"
}

router = APIRouter(include_in_schema=False)


def _file(path: Path) -> FileResponse:
    return FileResponse(path, media_type=_MEDIA_TYPES[path.suffix], headers=SECURITY_HEADERS)


@router.api_route("/", methods=["GET", "HEAD"])
def search_page() -> FileResponse:
    """The search page."""
    return _file(WEB_DIR / "index.html")


@router.api_route("/static/{name}", methods=["GET", "HEAD"])
def static_file(name: str) -> FileResponse:
    """One of the page's scripts or stylesheets."""
    path = STATIC_FILES.get(name)
    if path is None:
        raise HTTPException(status_code=404, detail="Not found", headers=SECURITY_HEADERS)
    return _file(path)
