"""The web UI as the api serves it (page, config, every module from the package, nothing
from elsewhere), and the two reads it relies on: `GET /lots?mine=true` and
`GET /admin/users?role=`."""

import contextlib
import re

import httpx
import pytest

from services.api.config import Settings as ApiSettings
from services.api.entrypoints import serve as serve_api
from services.api.users import Identity
from services.api.web import STATIC
from services.bookings.config import Settings as BookingsSettings
from services.bookings.entrypoints import serve as serve_bookings
from services.notifier.config import Settings as NotifierSettings
from services.notifier.entrypoints import serve as serve_notifier
from services.runtime.config import Common
from services.runtime.db import make_engine
from services.runtime.embedded import free_port
from tests.support import running

SECRET = "integration-test-secret-of-32-bytes!"
IMPORT = re.compile(r"""(?:from|import)\s*["']([^"']+)["']""")


@pytest.fixture
async def web(nats_url, database_url):
    common = Common(nats_url, database_url)
    port = free_port()
    settings = ApiSettings(
        common,
        port=port,
        jwt_secret=SECRET,
        demo_accounts=("driver@example.com", "owner@example.com"),
        demo_password="parkmate",
    )
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(running(serve_bookings, BookingsSettings(common)))
        await stack.enter_async_context(running(serve_notifier, NotifierSettings(common)))
        await stack.enter_async_context(running(serve_api, settings))
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            http.database_url = database_url
            yield http


async def test_the_page_and_every_module_it_loads_come_from_the_package(web):
    page = await web.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert page.headers["cache-control"] == "no-cache"
    html = page.text
    assert '<script type="importmap">' in html and 'src="/static/js/main.js"' in html
    config = re.search(r'id="parkmate-config" type="application/json">(.*?)</script>', html)
    assert '"demo_accounts": ["driver@example.com", "owner@example.com"]' in config.group(1)
    # Walk the module graph from main.js: every import resolves to a file we serve.
    imports = dict(re.findall(r'"(preact|preact/hooks|htm)": "([^"]+)"', html))
    todo, seen = ["/static/js/main.js"], set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        r = await web.get(path)
        assert r.status_code == 200, path
        assert "javascript" in r.headers["content-type"], (path, r.headers["content-type"])
        for spec in IMPORT.findall(r.text):
            if spec.startswith("./"):
                todo.append(path.rsplit("/", 1)[0] + spec[1:])
            else:
                assert spec in imports, f"{path} imports {spec!r}, which is not vendored"
                todo.append(imports[spec])
    assert {"/static/vendor/preact.mjs", "/static/js/booking.js", "/static/js/live.js"} <= seen
    assert (await web.get("/static/app.css")).status_code == 200
    assert (await web.get("/static/nope.js")).status_code == 404


def test_no_static_file_loads_anything_from_another_host():
    for path in STATIC.rglob("*"):
        if path.suffix in (".js", ".mjs", ".html", ".css"):
            text = path.read_text()
            assert not re.search(r"""(src|href)=["']?(https?:)?//""", text), path
            assert not re.search(r"""(from|import)\s*["'](https?:)?//""", text), path
            assert "url(http" not in text, path


async def test_page_offers_no_demo_accounts_unless_configured(nats_url, database_url):
    from services.api.web import page_config

    assert page_config(ApiSettings(Common(nats_url, database_url), SECRET)) == {}


async def _login(http: httpx.AsyncClient, email: str) -> dict:
    r = await http.post("/api/v1/auth/login", json={"email": email, "password": "secret-pw"})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


async def test_admin_lists_users_by_role_and_dashboards_list_their_lots(web):
    engine = make_engine(web.database_url, pool_size=1)
    try:
        identity = Identity(engine)
        await identity.create_user("root@example.com", "secret-pw", "Root", ["admin"])
        owner = await identity.create_user("own@example.com", "secret-pw", "Own", ["owner"])
        emps = [
            await identity.create_user(f"emp{i}@example.com", "secret-pw", f"E{i}", ["employee"])
            for i in range(3)
        ]
        await identity.create_user("drv@example.com", "secret-pw", "Drv", ["driver"])
    finally:
        await engine.dispose()
    admin = await _login(web, "root@example.com")
    first = await web.get("/api/v1/admin/users?role=employee&limit=2", headers=admin)
    assert first.status_code == 200
    page = first.json()
    assert [u["email"] for u in page["items"]] == ["emp0@example.com", "emp1@example.com"]
    rest = await web.get(
        f"/api/v1/admin/users?role=employee&limit=2&cursor={page['next_cursor']}", headers=admin
    )
    assert [u["email"] for u in rest.json()["items"]] == ["emp2@example.com"]
    assert rest.json()["next_cursor"] is None
    everyone = (await web.get("/api/v1/admin/users", headers=admin)).json()["items"]
    assert len(everyone) == 6 and "password_hash" not in everyone[0]
    assert (await web.get("/api/v1/admin/users?role=pilot", headers=admin)).status_code == 400
    driver = await _login(web, "drv@example.com")
    assert (await web.get("/api/v1/admin/users", headers=driver)).status_code == 403

    own = await _login(web, "own@example.com")
    lot = {"address": "1 Main St", "slot_count": 2}
    mine = (await web.post("/api/v1/lots", json=lot | {"name": "Mine"}, headers=own)).json()
    other = await web.post("/api/v1/lots", json=lot | {"name": "Other"}, headers=admin)
    assert other.status_code == 201
    assert (
        await web.post(
            f"/api/v1/lots/{mine['id']}/staff", json={"user_id": emps[0].id}, headers=own
        )
    ).status_code == 201

    async def names(headers, query="?mine=true"):
        r = await web.get("/api/v1/lots" + query, headers=headers)
        assert r.status_code == 200, r.text
        return [lot["name"] for lot in r.json()["items"]]

    assert await names(own) == ["Mine"]
    assert await names(await _login(web, "emp0@example.com")) == ["Mine"]
    assert await names(await _login(web, "emp1@example.com")) == []
    assert await names(driver) == []
    assert await names(driver, "") == ["Mine", "Other"]
    assert await names(admin) == ["Other"]
    assert owner.id == mine["owner_id"]
