"""The API docs at `/docs`, with Swagger UI served from the installed package.

FastAPI's default page loads Swagger UI's script and stylesheet from a CDN (and its
favicon from fastapi.tiangolo.com), so on a network without internet `/docs` is blank.
Here every asset comes from the `swagger-ui-bundle-v2` wheel (Swagger UI 5, which reads
OpenAPI 3.1), under `/docs/static/`: FastAPI's "self-hosting" recipe, with only the named
files servable. Swagger UI's online validator badge (an image from validator.swagger.io)
is turned off. ReDoc, FastAPI's second docs page, loads from a CDN too and is not served.

Wiring: `FastAPI(docs_url=None, redoc_url=None)` and `app.include_router(docs.router)`.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException, Request
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import FileResponse, HTMLResponse
from swagger_ui_bundle import swagger_ui_path

DOCS_URL = "/docs"
OAUTH2_REDIRECT_URL = "/docs/oauth2-redirect"
ASSETS_URL = "/docs/static"

ASSETS_DIR = Path(str(swagger_ui_path))
_MEDIA_TYPES = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "favicon-32x32.png": "image/png",
}
# Revalidate on every load (ETag / Last-Modified make it a 304): an upgrade of the wheel
# changes the files behind the same URLs.
_HEADERS = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}

router = APIRouter(include_in_schema=False)


@router.get(DOCS_URL)
def swagger_ui(request: Request) -> HTMLResponse:
    """Swagger UI for `/openapi.json`, every asset from this server."""
    root = request.scope.get("root_path", "")
    return get_swagger_ui_html(
        openapi_url=f"{root}{request.app.openapi_url}",
        title=f"{request.app.title} - API docs",
        swagger_js_url=f"{root}{ASSETS_URL}/swagger-ui-bundle.js",
        swagger_css_url=f"{root}{ASSETS_URL}/swagger-ui.css",
        swagger_favicon_url=f"{root}{ASSETS_URL}/favicon-32x32.png",
        oauth2_redirect_url=f"{root}{OAUTH2_REDIRECT_URL}",
        swagger_ui_parameters={"validatorUrl": None},
    )


@router.get(OAUTH2_REDIRECT_URL)
def swagger_ui_redirect() -> HTMLResponse:
    return get_swagger_ui_oauth2_redirect_html()


@router.get(f"{ASSETS_URL}/{{name}}")
def swagger_ui_asset(name: str) -> FileResponse:
    media_type = _MEDIA_TYPES.get(name)
    if media_type is None:
        raise HTTPException(status_code=404, detail="Not found")
    return FileResponse(ASSETS_DIR / name, media_type=media_type, headers=_HEADERS)
