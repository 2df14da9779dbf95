"""Health, readiness and Prometheus metrics over HTTP for the worker services.

The api answers /healthz, /readyz and /metrics on its own port. bookings, timers and
notifier have no HTTP server of their own, so each serves these three paths on
PARKMATE_PROBE_PORT when it is set (Kubernetes probes, Prometheus scrapes, and
`parkmate dev`, which gives each a free port and lists them in its process list); unset
(the default) it serves nothing. /readyz answers 200 once the service is ready and 503
while it starts or drains.
"""

import asyncio
import contextlib

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest


class ProbeServer:
    """A minimal HTTP/1.1 server for three GET paths; `ready` flips /readyz."""

    def __init__(self, port: int, host: str = "0.0.0.0"):
        self.port = port
        self.host = host
        self.ready = False
        self._server: asyncio.base_events.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.host, self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request_line = await asyncio.wait_for(reader.readline(), 5)
            while (await asyncio.wait_for(reader.readline(), 5)) not in (b"\r\n", b"\n", b""):
                pass
            parts = request_line.decode("latin-1").split()
            path = parts[1] if len(parts) > 1 else "/"
            status, ctype, body = self.answer(path)
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    def answer(self, path: str) -> tuple[str, str, bytes]:
        """(status line, content type, body) for a GET of `path`."""
        path = path.split("?", 1)[0]
        if path == "/healthz":
            return "200 OK", "text/plain", b"ok\n"
        if path == "/readyz":
            return (
                ("200 OK", "text/plain", b"ready\n")
                if self.ready
                else ("503 Service Unavailable", "text/plain", b"not ready\n")
            )
        if path == "/metrics":
            return "200 OK", CONTENT_TYPE_LATEST, generate_latest()
        return "404 Not Found", "text/plain", b"not found\n"


async def start_probes(port: int | None) -> ProbeServer | None:
    """Start a ProbeServer on `port`, or return None when it is None."""
    if port is None:
        return None
    server = ProbeServer(port)
    await server.start()
    return server
