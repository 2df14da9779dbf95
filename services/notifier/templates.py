"""Template overrides, no I/O: which placeholders a type offers, validating an override,
and merging overrides over `domain.DEFAULT_TEMPLATES`.

The placeholders of an event type are the keys of `Facts.fields` that `domain.facts_of`
builds from the type's data. They are found by building the facts of a sample event
whose fields are filled from the data Struct's own type information, so a field added
to a contract appears here without a second list to keep in step.
"""

import functools
import string
from datetime import UTC, datetime
from typing import Any

import msgspec

from services.contracts.errors import DomainError
from services.notifier import domain

_SAMPLE_TIME = datetime(2026, 1, 1, tzinfo=UTC)


def _sample(info: msgspec.inspect.Type) -> Any:
    """A value of the msgspec type `info`: the builtin-friendly form msgspec.convert takes."""
    t = msgspec.inspect
    if isinstance(info, t.UnionType):
        non_null = [x for x in info.types if not isinstance(x, t.NoneType)]
        return _sample(non_null[0]) if non_null else None
    if isinstance(info, t.StrType):
        return "x"
    if isinstance(info, t.IntType | t.FloatType):
        return 1
    if isinstance(info, t.BoolType):
        return False
    if isinstance(info, t.DateTimeType):
        return _SAMPLE_TIME
    if isinstance(info, t.LiteralType):
        return info.values[0]
    if isinstance(info, t.ListType | t.SetType | t.TupleType | t.VarTupleType):
        return []
    if isinstance(info, t.DictType):
        return {}
    if isinstance(info, t.StructType):
        return {f.encode_name: _sample(f.type) for f in info.fields}
    return None


@functools.cache
def placeholders_for(event_type: str) -> frozenset[str]:
    """Names a template of `event_type` may use as `{name}`; empty for an unknown type."""
    if event_type not in domain.EVENT_TYPES:
        return frozenset()
    data_type = domain.DATA_TYPES.get(event_type, domain.BookingEventData)
    raw = msgspec.json.encode(_sample(msgspec.inspect.type_info(data_type)))
    return frozenset(domain.facts_of(event_type, raw).fields)


def audiences_of(event_type: str) -> list[str]:
    """The audiences `event_type` has templates for, in the defaults' order."""
    return [a for (t, a) in domain.DEFAULT_TEMPLATES if t == event_type]


def check_text(event_type: str, field: str, text: str) -> None:
    """Raise DomainError("invalid") naming the first placeholder of `text` that
    `event_type` does not provide, or a malformed one (`{`, `{0}`, `{x.y}`, `{x!r}`,
    `{x:>9}`: only plain `{name}` is allowed; `{{` and `}}` are literal braces)."""
    allowed = placeholders_for(event_type)
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as e:
        raise DomainError(
            "invalid",
            f"{field}: {e}; write placeholders as {{name}} and literal braces as {{{{ }}}}.",
            {"field": field},
        ) from None
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if name not in allowed:
            raise DomainError(
                "invalid",
                f"{field}: unknown placeholder {{{name}}} for {event_type}; use "
                + ", ".join("{" + p + "}" for p in sorted(allowed))
                + ".",
                {"field": field, "placeholder": name, "allowed": sorted(allowed)},
            )
        if spec or conversion:
            raise DomainError(
                "invalid",
                f"{field}: {{{name}}} may not have a format spec or conversion; "
                "write it as {" + name + "}.",
                {"field": field, "placeholder": name},
            )


def resolve_audience(event_type: str, audience: str | None) -> str:
    """`audience`, or the type's first one; DomainError not_found / invalid otherwise."""
    audiences = audiences_of(event_type)
    if not audiences:
        raise DomainError(
            "not_found",
            f"No template for {event_type!r}; GET /api/v1/admin/notification-templates lists them.",
        )
    if audience is None:
        return audiences[0]
    if audience not in audiences:
        raise DomainError(
            "invalid",
            f"audience: {event_type} has templates for " + ", ".join(audiences) + f", not "
            f"{audience!r}.",
            {"field": "audience"},
        )
    return audience


def effective(
    event_type: str, overrides: dict[tuple[str, str], domain.Template]
) -> dict[tuple[str, str], domain.Template]:
    """The templates of `event_type` in the defaults' order, overrides replacing defaults
    (an override for an audience the defaults do not have is ignored)."""
    return {
        key: overrides.get(key, template)
        for key, template in domain.DEFAULT_TEMPLATES.items()
        if key[0] == event_type
    }


class OverridesCache:
    """The template overrides as of `version` (the counter in notifier.templates_state,
    bumped by a trigger on every change; -1 when never loaded), kept between batches so
    a batch reads the overrides only when the counter it sees in its own transaction has
    moved: a change saved through any replica applies to the next batch everywhere."""

    def __init__(self) -> None:
        self.version = -1
        self._by_type: dict[str, dict[tuple[str, str], domain.Template]] = {}

    def load(self, version: int, rows: list[Any]) -> None:
        """Replace the overrides with `rows` (each with type, audience, level, priority,
        title and body, by key) as of `version`."""
        by_type: dict[str, dict[tuple[str, str], domain.Template]] = {}
        for r in rows:
            by_type.setdefault(r["type"], {})[(r["type"], r["audience"])] = domain.Template(
                r["level"], r["priority"], r["title"], r["body"]
            )
        self._by_type = by_type
        self.version = version

    def effective(self, event_type: str) -> dict[tuple[str, str], domain.Template]:
        """`effective(event_type, overrides)` with the cached overrides."""
        return effective(event_type, self._by_type.get(event_type, {}))
