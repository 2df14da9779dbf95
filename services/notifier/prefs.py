"""Preferences rules, no I/O: validation, and whether a notification is pushed live.

`live_allowed` is the whole decision: websocket off silences everything; otherwise an
`urgent` notification always goes out, and a muted type or quiet hours silence the rest.
A silenced notification is still stored, unread, and still counted.
"""

import re
from datetime import datetime, time
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from services.contracts.errors import DomainError
from services.contracts.notifier import Preferences, QuietHours

DEFAULT = Preferences()
_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


def parse_hhmm(value: str, field: str) -> time:
    """ "HH:MM" (00:00 to 23:59) as a time; raises DomainError("invalid") naming `field`."""
    m = _HHMM.match(value)
    if not m:
        raise DomainError(
            "invalid",
            f"{field} must be a 24-hour time HH:MM such as 22:00, not {value!r}.",
            {"field": field},
        )
    return time(int(m[1]), int(m[2]))


def zone(name: str, field: str = "quiet_hours.timezone") -> ZoneInfo:
    """The IANA time zone `name`; raises DomainError("invalid") naming `field`."""
    try:
        if not name or name.startswith(("/", ".")) or ".." in name:
            raise ValueError(name)
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise DomainError(
            "invalid",
            f"{field} must be an IANA time zone such as Europe/Berlin, not {name!r}.",
            {"field": field},
        ) from None


def validate(prefs: Preferences, known_types: set[str]) -> Preferences:
    """`prefs` checked and normalised (muted types deduplicated and sorted).

    Raises DomainError("invalid") whose `extra.field` names the offending field: an
    unknown muted type, a time that is not HH:MM, an unknown time zone, or quiet hours
    whose start equals their end.
    """
    for t in prefs.muted_types:
        if t not in known_types:
            raise DomainError(
                "invalid",
                f"muted_types: unknown notification type {t!r}; known types are "
                + ", ".join(sorted(known_types))
                + ".",
                {"field": "muted_types", "type": t},
            )
    quiet = prefs.quiet_hours
    if quiet is not None:
        start = parse_hhmm(quiet.start, "quiet_hours.start")
        end = parse_hhmm(quiet.end, "quiet_hours.end")
        zone(quiet.timezone)
        if start == end:
            raise DomainError(
                "invalid",
                "quiet_hours.end must differ from quiet_hours.start (send null for none).",
                {"field": "quiet_hours.end"},
            )
    return Preferences(
        muted_types=sorted(set(prefs.muted_types)),
        quiet_hours=quiet,
        websocket=prefs.websocket,
    )


def in_quiet_hours(quiet: QuietHours, now: datetime) -> bool:
    """Whether the aware datetime `now` falls in [start, end) local time of the window's
    zone; a window whose end is before its start spans midnight (22:00-07:00)."""
    local = now.astimezone(zone(quiet.timezone)).time().replace(tzinfo=None)
    start = parse_hhmm(quiet.start, "quiet_hours.start")
    end = parse_hhmm(quiet.end, "quiet_hours.end")
    if start < end:
        return start <= local < end
    return local >= start or local < end


def live_allowed(prefs: Preferences, type_: str, priority: str, now: datetime) -> bool:
    """True when a notification of `type_` and `priority` created at `now` (aware) gets a
    live `notification` frame under `prefs`."""
    if not prefs.websocket:
        return False
    if priority == "urgent":
        return True
    if type_ in prefs.muted_types:
        return False
    return not (prefs.quiet_hours is not None and in_quiet_hours(prefs.quiet_hours, now))
