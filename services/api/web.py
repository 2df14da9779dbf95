"""The web front end: the page at `/` and its files under `/static` (docs/web-ui.md).

Everything is served from `services/api/static` inside the package: the JS libraries
are vendored there (scripts/vendor-web), so nothing is fetched from elsewhere at run
time and no build step runs. The page gets a small JSON config in a script tag: in
`parkmate dev` it lists the demo accounts so the login page can offer them.
"""

import json
from pathlib import Path

from litestar import MediaType, Response, get
from litestar.datastructures import CacheControlHeader
from litestar.static_files import create_static_files_router

from services.api.config import Settings

STATIC = Path(__file__).parent / "static"
CONFIG_MARK = "<!--parkmate-config-->"
# Revalidate on every load (ETag / Last-Modified make that cheap), so a new version of
# the page never runs against stale modules.
NO_CACHE = CacheControlHeader(no_cache=True)


def page_config(settings: Settings) -> dict:
    """What the page needs to know before logging in."""
    config: dict = {}
    if settings.demo_accounts:
        config["demo_accounts"] = list(settings.demo_accounts)
        config["demo_password"] = settings.demo_password
    return config


def render_index(settings: Settings) -> str:
    page = (STATIC / "index.html").read_text(encoding="utf-8")
    # JSON escapes for <, > and &, so no value can end the script element early.
    data = (
        json.dumps(page_config(settings))
        .replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
    )
    tag = f'<script id="parkmate-config" type="application/json">{data}</script>'
    return page.replace(CONFIG_MARK, tag)


def web_routes(settings: Settings) -> list:
    """The route handlers of the front end: `/` and `/static/...`."""
    index_html = render_index(settings)

    @get("/", include_in_schema=False, media_type=MediaType.HTML, cache_control=NO_CACHE)
    async def index() -> Response[str]:
        return Response(index_html, media_type=MediaType.HTML)

    static = create_static_files_router(
        path="/static", directories=[STATIC], cache_control=NO_CACHE, include_in_schema=False
    )
    return [index, static]
