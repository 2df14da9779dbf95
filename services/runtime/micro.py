"""Request/reply over NATS micro services, served concurrently.

nats.micro runs an endpoint's handler one request at a time per process (docs/nats.md,
"Traps the code relies on avoiding"); `MicroServer` hands each request to a task,
bounded by a semaphore, so a slow request does not hold up the others. Handlers take
and return msgspec Structs; a `DomainError` becomes a micro error reply with its code,
detail and an `ErrorBody` JSON body. `call` is the client side used by the api.

Log context: a request's handler runs with `request_id` bound (the caller's, sent as
the `X-Request-ID` header by `call` when the api handles an HTTP request, else a new
one) and `user_id` (the request's `actor`, or its `user_id` field), so any line it
logs says which request and whose it was.
"""

import asyncio
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import msgspec
import structlog
from nats.aio.client import Client
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout
from nats.micro import ServiceConfig, add_service
from nats.micro.request import ERROR_CODE_HEADER, ERROR_HEADER, Request
from nats.micro.service import EndpointConfig, Service
from sqlalchemy.exc import TimeoutError as PoolTimeout

from services.contracts.errors import DomainError, ErrorBody
from services.contracts.limits import explain
from services.runtime.db import DISCONNECTED, is_disconnect
from services.runtime.metrics import REQUEST_SECONDS, REQUESTS

T = TypeVar("T")
R = TypeVar("R")

REQUEST_ID_HEADER = "X-Request-ID"

log = structlog.get_logger()


@dataclass(frozen=True)
class Endpoint:
    """One request subject: its request Struct type, the async handler, and the reply
    Struct type (documentation: AsyncAPI)."""

    subject: str
    request_type: type
    handler: Callable[[Any], Awaitable[msgspec.Struct]]
    reply_type: type | None = None

    @property
    def name(self) -> str:
        return self.subject.replace(".", "-")


class MicroServer:
    """Serves endpoints as the NATS micro service `name`, `concurrency` requests at once."""

    def __init__(
        self,
        nc: Client,
        name: str,
        version: str,
        description: str,
        endpoints: list[Endpoint],
        concurrency: int = 64,
    ):
        self._nc = nc
        self._config = ServiceConfig(name=name, version=version, description=description)
        self._endpoints = endpoints
        self._sem = asyncio.Semaphore(concurrency)
        self._tasks: set[asyncio.Task] = set()
        self._service: Service | None = None
        self._encoder = msgspec.json.Encoder()

    async def start(self) -> None:
        self._service = await add_service(self._nc, self._config)
        for ep in self._endpoints:
            decoder = msgspec.json.Decoder(ep.request_type)
            await self._service.add_endpoint(
                EndpointConfig(
                    name=ep.name, subject=ep.subject, handler=self._dispatcher(ep, decoder)
                )
            )

    def _dispatcher(self, ep: Endpoint, decoder: msgspec.json.Decoder):
        async def dispatch(request: Request) -> None:
            await self._sem.acquire()
            task = asyncio.create_task(self._handle(ep, decoder, request))
            self._tasks.add(task)
            task.add_done_callback(self._done)

        return dispatch

    def _done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        self._sem.release()

    async def _handle(self, ep: Endpoint, decoder: msgspec.json.Decoder, request: Request) -> None:
        started = time.perf_counter()
        outcome = "ok"
        # Each request is a task of its own (`_dispatcher`), so what is bound here stays
        # with this request and needs no unbinding.
        structlog.contextvars.bind_contextvars(
            request_id=(request.headers or {}).get(REQUEST_ID_HEADER) or new_request_id()
        )
        try:
            try:
                payload = decoder.decode(request.data)
            except msgspec.ValidationError as e:
                field, detail = explain(str(e))
                raise DomainError("invalid", detail, {"field": field}) from e
            except msgspec.DecodeError as e:
                raise DomainError("invalid", f"Invalid request: {e}") from e
            user_id = _user_id(payload)
            if user_id is not None:
                structlog.contextvars.bind_contextvars(user_id=user_id)
            reply = await ep.handler(payload)
            await request.respond(self._encoder.encode(reply))
        except DomainError as e:
            outcome = e.code
            await self._respond_error(request, e)
        except Exception as e:
            if is_disconnect(e):
                log.warning("database connection lost", subject=ep.subject)
                error = DomainError("unavailable", DISCONNECTED)
            elif isinstance(e, PoolTimeout):
                # Every pooled connection busy for the pool's timeout: overloaded, not
                # broken; the api turns this into 503 with Retry-After.
                log.warning("database pool exhausted", subject=ep.subject)
                error = DomainError("unavailable", "The service is busy; retry in a moment.")
            else:
                log.exception("request failed", subject=ep.subject)
                error = DomainError("internal", "Internal error")
            outcome = error.code
            await self._respond_error(request, error)
        finally:
            name = self._config.name
            REQUESTS.labels(name, ep.subject, outcome).inc()
            REQUEST_SECONDS.labels(name, ep.subject).observe(time.perf_counter() - started)

    async def _respond_error(self, request: Request, e: DomainError) -> None:
        body = self._encoder.encode(ErrorBody(code=e.code, detail=e.detail, extra=e.extra))
        await request.respond_error(e.code, e.detail, data=body)

    async def stop(self) -> None:
        """Stop taking requests, then wait for the ones in flight to reply."""
        if self._service is not None:
            await self._service.stop()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=10)


def new_request_id() -> str:
    """A fresh request id: 16 hex digits."""
    return secrets.token_hex(8)


def _user_id(payload: Any) -> str | None:
    """Whose request it is: its `actor`'s user id, else its `user_id` field."""
    actor = getattr(payload, "actor", None)
    user_id = getattr(actor, "user_id", None) or getattr(payload, "user_id", None)
    return user_id if isinstance(user_id, str) else None


class RemoteError(Exception):
    """An error reply from a service (`code` as in contracts.errors) or no answer at all."""

    def __init__(self, code: str, detail: str, extra: dict[str, Any] | None = None):
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.extra = extra


_encoder = msgspec.json.Encoder()
_error_decoder = msgspec.json.Decoder(ErrorBody)


async def call(
    nc: Client, subject: str, request: msgspec.Struct, reply_type: type[R], timeout: float = 5.0
) -> R:
    """Send `request` to `subject` and decode the reply as `reply_type`, with the
    `request_id` bound in the caller's log context (if any) as the X-Request-ID header.

    Raises RemoteError with the service's code, `unavailable` when no service answers
    within `timeout` seconds, or `invalid` when the request is larger than a NATS
    message may be (the server's max payload).
    """
    payload = _encoder.encode(request)
    if len(payload) > nc.max_payload:
        raise RemoteError(
            "invalid",
            f"The request is {len(payload)} bytes, more than the {nc.max_payload} bytes "
            "one message may carry; send less in one call.",
        )
    request_id = structlog.contextvars.get_contextvars().get("request_id")
    sent = {REQUEST_ID_HEADER: request_id} if request_id else None
    try:
        msg = await nc.request(subject, payload, timeout=timeout, headers=sent)
    except (NoRespondersError, NatsTimeout) as e:
        raise RemoteError(
            "unavailable", f"The service behind {subject} did not answer; try again in a moment."
        ) from e
    headers = msg.headers or {}
    if ERROR_CODE_HEADER in headers:
        try:
            body = _error_decoder.decode(msg.data)
            raise RemoteError(body.code, body.detail, body.extra)
        except msgspec.DecodeError:
            raise RemoteError(headers[ERROR_CODE_HEADER], headers.get(ERROR_HEADER, "")) from None
    return msgspec.json.decode(msg.data, type=reply_type)
