"""People using the running system in end-to-end tests: a token, an open socket whose
frames are collected in the background, and helpers to wait for frames and read the inbox."""

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import websockets

from tests.support import eventually


@dataclass
class Person:
    name: str
    id: str
    token: str
    port: int
    frames: list[dict] = field(default_factory=list)
    ws: Any = None
    _reader: asyncio.Task | None = None

    @property
    def auth(self) -> dict:
        return {"Authorization": f"Bearer {self.token}"}

    async def connect(self) -> "Person":
        self.ws = await websockets.connect(f"ws://127.0.0.1:{self.port}/ws?token={self.token}")
        hello = json.loads(await self.ws.recv())
        assert hello["type"] == "hello"
        self._reader = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            async for raw in self.ws:
                frame = json.loads(raw)
                if frame["type"] == "ping":  # the server's heartbeat wants an answer
                    await self.ws.send(json.dumps({"type": "pong"}))
                self.frames.append(frame)

    async def send(self, frame: dict) -> None:
        await self.ws.send(json.dumps(frame))

    async def handled(self) -> None:
        """Wait until the server has handled every frame sent so far: it handles a
        socket's frames in order, so the pong of a ping sent now comes after them."""
        pongs = len([f for f in self.frames if f["type"] == "pong"])
        await self.send({"type": "ping"})
        await eventually(lambda: len([f for f in self.frames if f["type"] == "pong"]) > pongs)

    def notifications(self, type_: str | None = None) -> list[dict]:
        return [
            f["notification"]
            for f in self.frames
            if f["type"] == "notification" and (type_ is None or f["notification"]["type"] == type_)
        ]

    async def wait_for(self, type_: str, timeout: float = 10.0, **match) -> dict:
        """The first live notification of `type_` whose data has the given values."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for n in self.notifications(type_):
                if all(n["data"].get(k) == v for k, v in match.items()):
                    return n
            await asyncio.sleep(0.05)
        raise AssertionError(
            f"{self.name} got no {type_} {match} within {timeout} s; "
            f"got {[n['type'] for n in self.notifications()]}"
        )

    async def wait_frame(self, type_: str, timeout: float = 10.0, **match) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for f in self.frames:
                if f["type"] == type_ and all(f.get(k) == v for k, v in match.items()):
                    return f
            await asyncio.sleep(0.05)
        raise AssertionError(f"{self.name} got no {type_} frame {match} within {timeout} s")

    async def inbox(self) -> list[dict]:
        """Everything stored for this person, oldest first (read through `resume`)."""
        async with websockets.connect(f"ws://127.0.0.1:{self.port}/ws?token={self.token}") as ws:
            hello = json.loads(await ws.recv())
            await ws.send(json.dumps({"type": "resume", "after_seq": 0}))
            items = []
            while len(items) < hello["last_seq"]:
                frame = json.loads(await asyncio.wait_for(ws.recv(), 5))
                if frame["type"] == "notification":
                    items.append(frame["notification"])
            return items

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self._reader is not None:
            await self._reader


async def make_person(
    system,
    http: httpx.AsyncClient,
    name: str,
    roles: list[str] | None,
    admin: "Person | None" = None,
) -> Person:
    user_id, token = await system.user(
        http, f"{name}@example.com", roles, admin.token if admin else None
    )
    return await Person(name, user_id, token, system.port).connect()
