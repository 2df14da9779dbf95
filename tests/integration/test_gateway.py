"""The WebSocket gateway with the notifier in-process, real NATS and PostgreSQL: a
notification whose live message never came (its publisher died after the commit) is
fetched from the inbox, in order, when the next one arrives."""

import asyncio
import contextlib
import json

import httpx
import websockets

from services.api import identity
from services.api.config import Settings as ApiSettings
from services.api.entrypoints import serve as serve_api
from services.contracts.ids import uuid7
from services.notifier.config import Settings as NotifierSettings
from services.notifier.entrypoints import serve as serve_notifier
from services.runtime.config import Common
from services.runtime.embedded import free_port
from tests.integration.test_api import KEYS, SECRET, auth, register
from tests.integration.test_notification_center import known
from tests.support import nats_client, running, store_unpublished


async def test_a_lost_live_message_is_filled_from_the_inbox_in_order(nats_url, database_url):
    common = Common(nats_url, database_url)
    port = free_port()
    admin = identity.issue_token(KEYS, str(uuid7()), ["admin"], 3600)
    async with contextlib.AsyncExitStack() as stack:
        nc = await stack.enter_async_context(nats_client(nats_url))
        await stack.enter_async_context(running(serve_notifier, NotifierSettings(common)))
        await stack.enter_async_context(
            running(serve_api, ApiSettings(common, port=port, jwt_secret=SECRET))
        )
        http = await stack.enter_async_context(
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}/api/v1")
        )
        token = await register(http)
        user_id = identity.verify_token(KEYS, token).user_id
        await known(nc, [user_id])

        async def send(title: str) -> None:
            r = await http.post(
                "/admin/notifications",
                headers=auth(admin),
                json={"audience": {"user_ids": [user_id]}, "title": title, "body": "b"},
            )
            assert r.status_code == 202, r.text

        await send("one")
        ws = await stack.enter_async_context(
            websockets.connect(f"ws://127.0.0.1:{port}/ws?token={token}")
        )
        assert json.loads(await ws.recv())["last_seq"] == 1
        await store_unpublished(database_url, [user_id], "lost")
        await send("three")
        got = []
        while len(got) < 2:
            frame = json.loads(await asyncio.wait_for(ws.recv(), 5))
            if frame["type"] == "notification":
                got.append((frame["notification"]["seq"], frame["notification"]["title"]))
        assert got == [(2, "lost"), (3, "three")]

        paths = (await http.get(f"http://127.0.0.1:{port}/schema/openapi.json")).json()["paths"]
        for path in (
            "/api/v1/notifications",
            "/api/v1/notifications/unread-count",
            "/api/v1/notifications/{notification_id}/read",
            "/api/v1/notifications/preferences",
            "/api/v1/admin/notifications",
            "/api/v1/admin/notification-templates/{type}",
        ):
            assert path in paths, path
        assert "404" in paths["/api/v1/notifications/{notification_id}/read"]["post"]["responses"]
