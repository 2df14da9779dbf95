"""The AsyncAPI document: generated from the message types, committed, complete."""

import json
from pathlib import Path

from services import asyncapi
from services.contracts import catalog, subjects

DOC = Path(__file__).parents[2] / "docs" / "asyncapi.json"
EVENT_PREFIXES = ("BOOKING_", "PAYMENT_", "CARWASH_", "STAFF_", "USER_")


def constants(prefixes: tuple[str, ...]) -> set[str]:
    return {v for k, v in vars(subjects).items() if k.startswith(prefixes) and isinstance(v, str)}


def test_committed_document_is_up_to_date():
    assert DOC.read_text() == asyncapi.render(), (
        "docs/asyncapi.json is stale: run `parkmate asyncapi --output docs/asyncapi.json`"
    )


def test_every_event_subject_has_exactly_one_channel():
    listed = [e.subject for e in catalog.EVENTS]
    assert len(listed) == len(set(listed))
    assert set(listed) == constants(EVENT_PREFIXES)


def test_every_bookings_request_subject_is_served_and_documented():
    served = [ep.subject for ep in asyncapi.request_endpoints()["bookings"]]
    assert len(served) == len(set(served))
    assert set(served) == constants(("BOOKINGS_",)) - {subjects.BOOKINGS_SERVICE}
    assert all(ep.reply_type is not None for ep in asyncapi.request_endpoints()["bookings"])


def test_every_reference_resolves():
    doc = json.loads(DOC.read_text())

    def refs(node):
        if isinstance(node, dict):
            for k, v in node.items():
                if k == "$ref":
                    yield v
                else:
                    yield from refs(v)
        elif isinstance(node, list):
            for v in node:
                yield from refs(v)

    for ref in refs(doc):
        node = doc
        for part in ref.removeprefix("#/").split("/"):
            node = node[part]


def test_descriptions_do_not_depend_on_how_the_toolchain_dedents_docstrings():
    # msgspec before 0.23 on Python before 3.13 keeps a docstring's indentation in the
    # schema's description; newer ones dedent it. Both shapes must give one document.
    kept = {
        "Booking": {
            "title": "Booking",
            "description": "Summary line.\n\n    Times are UTC datetimes;\n    `version` grows.",
            "properties": {"title": {"type": "string", "description": "\n    The title."}},
        }
    }
    dedented = {
        "Booking": {
            "title": "Booking",
            "description": "Summary line.\n\nTimes are UTC datetimes;\n`version` grows.",
            "properties": {"title": {"type": "string", "description": "The title."}},
        }
    }
    assert asyncapi.normalise_docstrings(kept) == asyncapi.normalise_docstrings(dedented)
    assert asyncapi.normalise_docstrings(kept) == dedented


def test_a_struct_docstring_is_described_the_same_indented_or_not():
    import msgspec

    class Indented(msgspec.Struct):
        # A plain string, so that no compiler dedents it before msgspec sees it.
        __doc__ = "Summary line.\n\n    Times are UTC datetimes;\n    `version` grows by one."
        at: int

    class Dedented(msgspec.Struct):
        __doc__ = "Summary line.\n\nTimes are UTC datetimes;\n`version` grows by one."
        at: int

    def described(struct: type) -> str:
        _, components = msgspec.json.schema_components([struct])
        return asyncapi.normalise_docstrings(components[struct.__name__])["description"]

    assert described(Indented) == described(Dedented)
    assert described(Dedented).endswith("UTC datetimes;\n`version` grows by one.")


def test_dead_letter_subjects_are_documented_for_every_durable():
    doc = json.loads(DOC.read_text())
    channel = doc["channels"]["DeadDurable"]
    assert channel["address"] == subjects.dead_letter_subject("{durable}")
    assert channel["parameters"]["durable"]["enum"] == list(subjects.DURABLES)
    headers = doc["components"]["messages"]["DeadDurable"]["headers"]["properties"]
    assert {"Parkmate-Dead-Subject", "Parkmate-Dead-Error", "Nats-Msg-Id"} <= set(headers)
