"""Build the AsyncAPI 3.0 document of every NATS subject from the message Structs.

`parkmate asyncapi` prints it; docs/asyncapi.json is the committed copy, and a test
fails when it differs from what the code generates (regenerate with
`parkmate asyncapi --output docs/asyncapi.json`).
"""

import inspect
import json
from typing import Any

import msgspec

from services.contracts import catalog, subjects
from services.contracts.envelope import CloudEvent
from services.contracts.errors import ErrorBody
from services.contracts.timers import TimerFired
from services.runtime import consumer
from services.runtime.micro import Endpoint

REF = "#/components/schemas/{name}"


def _name(subject: str) -> str:
    """ "booking.renewal_failed" -> "BookingRenewalFailed"; parameters keep their name."""
    return "".join(
        part.capitalize()
        for part in subject.replace("{", "").replace("}", "").replace("_", ".").split(".")
    )


def request_endpoints() -> dict[str, list[Endpoint]]:
    """Request/reply endpoints by service, as the services register them."""
    from services.bookings.entrypoints import endpoints as bookings_endpoints
    from services.notifier.entrypoints import endpoints as notifier_endpoints

    return {"bookings": bookings_endpoints(None), "notifier": notifier_endpoints(None)}


def normalise_docstrings(node: Any) -> Any:
    """`node` (a JSON schema) with every `title` and `description` passed through
    `inspect.cleandoc`.

    msgspec takes them from docstrings, which Python 3.13 and msgspec 0.23 dedent and
    older versions do not; cleaning them here makes the document the same whatever
    the toolchain, so its committed copy checks Parkmate and not the interpreter.
    """
    if isinstance(node, dict):
        return {
            key: inspect.cleandoc(value)
            if key in ("title", "description") and isinstance(value, str)
            else normalise_docstrings(value)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [normalise_docstrings(item) for item in node]
    return node


def build(version: str = "0.1.0") -> dict[str, Any]:
    """The AsyncAPI document as a dict (deterministic order)."""
    types: list[Any] = [CloudEvent, ErrorBody]
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}

    def message(name: str, payload: dict, summary: str | None = None) -> dict:
        messages[name] = {"name": name, "contentType": "application/json", "payload": payload}
        if summary:
            messages[name]["summary"] = summary
        return {"$ref": f"#/components/messages/{name}"}

    def add(
        address: str,
        payload: dict,
        summary: str,
        action: str,
        producer: str,
        reply: type | None = None,
    ) -> None:
        name = _name(address)
        channel = {
            "address": address,
            "messages": {name: message(name, payload, summary)},
            "description": f"{summary} Produced by {producer}.",
        }
        params = [p.strip("{}") for p in address.split(".") if p.startswith("{")]
        if params:
            channel["parameters"] = {p: {"description": p} for p in params}
        channels[name] = channel
        operation: dict[str, Any] = {"action": action, "channel": {"$ref": f"#/channels/{name}"}}
        if reply is not None:
            types.append(reply)
            ref = message(f"{name}Reply", {"$ref": REF.format(name=reply.__name__)})
            operation["reply"] = {
                "address": {"location": "$message.header#/replyTo"},
                "messages": [ref],
            }
        operations[f"{action}{name}"] = operation

    for ev in catalog.EVENTS:
        types.append(ev.data_type)
        payload = {
            "allOf": [
                {"$ref": REF.format(name="CloudEvent")},
                {
                    "type": "object",
                    "properties": {
                        "type": {"const": ev.subject},
                        "data": {"$ref": REF.format(name=ev.data_type.__name__)},
                    },
                },
            ]
        }
        add(
            ev.subject,
            payload,
            ev.summary + " CloudEvents 1.0 on stream EVENTS, Nats-Msg-Id = id.",
            "receive",
            ev.producer,
        )
    for ch in catalog.PLAIN:
        # A channel carrying several message types lists them as a tuple: oneOf.
        members = ch.message if isinstance(ch.message, tuple) else (ch.message,)
        types.extend(members)
        refs = [{"$ref": REF.format(name=m.__name__)} for m in members]
        add(
            ch.address,
            refs[0] if len(refs) == 1 else {"oneOf": refs},
            ch.summary,
            "receive",
            ch.producer,
        )
    dead = "dead.{durable}"
    types.append(TimerFired)
    add(
        dead,
        {
            "description": "The message as its consumer got it, unchanged: a CloudEvent "
            "(consumers of EVENTS) or a TimerFired (bookings-timers); for a message that "
            "could not be decoded, its bytes as they were.",
            "oneOf": [
                {"$ref": REF.format(name="CloudEvent")},
                {"$ref": REF.format(name="TimerFired")},
            ],
        },
        "A dead letter on stream DEAD: a message the durable consumer `durable` gave up "
        "on (undecodable, or still failing after its last delivery; docs/failure-modes.md). "
        "Kept until an operator replays it (`parkmate dead-letters replay DEAD:<seq>`), "
        "which republishes it on its original subject and deletes it here.",
        "receive",
        "every durable consumer (services/runtime/consumer.py)",
    )
    channels[_name(dead)]["parameters"]["durable"] = {
        "description": "The durable consumer that gave the message up.",
        "enum": list(subjects.DURABLES),
    }
    messages[_name(dead)]["headers"] = {
        "type": "object",
        "properties": {
            consumer.DEAD_SUBJECT: {"type": "string", "description": "Its original subject."},
            consumer.DEAD_STREAM: {"type": "string", "description": "Its own stream."},
            consumer.DEAD_SEQUENCE: {
                "type": "string",
                "description": "Its sequence in its own stream (an integer).",
            },
            consumer.DEAD_CONSUMER: {"type": "string", "description": "The durable."},
            consumer.DEAD_SERVICE: {"type": "string", "description": "The service."},
            consumer.DEAD_DELIVERIES: {
                "type": "string",
                "description": "How many times it was delivered (an integer).",
            },
            consumer.DEAD_ERROR: {
                "type": "string",
                "maxLength": 300,
                "description": "The last error, one line.",
            },
            consumer.DEAD_MSG_ID: {
                "type": "string",
                "description": "Its original Nats-Msg-Id, when it had one.",
            },
            "Nats-Msg-Id": {
                "type": "string",
                "description": "<stream>:<sequence>:<durable>: a repeated dead-lettering "
                "of one message is stored once.",
            },
        },
        "required": [
            consumer.DEAD_SUBJECT,
            consumer.DEAD_STREAM,
            consumer.DEAD_SEQUENCE,
            consumer.DEAD_CONSUMER,
            consumer.DEAD_SERVICE,
            consumer.DEAD_DELIVERIES,
            consumer.DEAD_ERROR,
            "Nats-Msg-Id",
        ],
    }
    for service, endpoints in request_endpoints().items():
        for ep in endpoints:
            types.append(ep.request_type)
            add(
                ep.subject,
                {"$ref": REF.format(name=ep.request_type.__name__)},
                f"Request to the NATS micro service `{service}`; errors come back in the "
                "headers Nats-Service-Error-Code / Nats-Service-Error with an ErrorBody.",
                "send",
                service,
                ep.reply_type,
            )
    _, components = msgspec.json.schema_components(types, ref_template=REF)
    components = normalise_docstrings(components)
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Parkmate NATS subjects",
            "version": version,
            "description": "Domain events, timers, live messages and request/reply "
            "subjects of Parkmate. See docs/nats.md and docs/contract.md.",
        },
        "defaultContentType": "application/json",
        "servers": {"nats": {"host": "localhost:4222", "protocol": "nats"}},
        "channels": dict(sorted(channels.items())),
        "operations": dict(sorted(operations.items())),
        "components": {
            "messages": dict(sorted(messages.items())),
            "schemas": dict(sorted(components.items())),
        },
    }


def render() -> str:
    return json.dumps(build(), indent=2, sort_keys=False) + "\n"
