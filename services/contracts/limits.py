"""Every bound on what clients send, in one place: lengths, ranges, patterns, currencies.

The request types of the api (`services/api/routes`) and of the services
(`services/contracts`) are annotated with the types below, so msgspec enforces them
when a request is decoded (at the api as a 400 naming the field, and again at the
service that receives it over NATS), and Litestar shows them in the OpenAPI schema
(`maxLength`, `pattern`, `minimum`, `maximum`). docs/api-limits.md lists them; a unit
test checks that the page and these constants agree.

Lengths count characters (code points), not bytes. The sizes are chosen so that no
message a service builds from valid input comes near NATS's default max payload
(1 MiB), whatever the characters: tests/unit/test_limits.py checks the largest ones.
"""

import re
from typing import Annotated, Literal

import msgspec

# ----- patterns -----

# One line of text: no C0 or C1 control character (NUL, tab, line breaks, escape, DEL...).
SINGLE_LINE = r"^[^\x00-\x1f\x7f-\x9f]*$"
# Free text: like SINGLE_LINE, but tab, line feed and carriage return are allowed.
MULTI_LINE = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]*$"
# A money amount: a non-negative decimal string, at most 7 digits before the point and
# 2 after ("0", "4.5", "1234567.89"); no sign, exponent or leading zeros.
AMOUNT_DIGITS = 7
AMOUNT = r"^(0|[1-9][0-9]{0,6})(\.[0-9]{1,2})?$"
AMOUNT_MAX = "9999999.99"

# What each pattern means, for error messages (msgspec would quote the regex).
PATTERN_RULES = {
    SINGLE_LINE: "must not contain control characters (NUL, tab, line breaks, ...)",
    MULTI_LINE: "must not contain control characters other than tab and line breaks",
    AMOUNT: f'must be a decimal string like "4.50": at most {AMOUNT_DIGITS} digits before '
    "the point and 2 after, no sign",
}

# ----- lengths (characters) -----

ID_MAX = 36  # a UUID in its canonical form
NAME_MAX = 200  # a lot's name, a user's full name
ADDRESS_MAX = 300
SLOT_LABEL_MAX = 12
PLATE_MAX = 32  # as typed; normalised, 2 to 12 letters or digits remain
VEHICLE_LABEL_MAX = 64
EMAIL_MAX = 254  # RFC 5321's limit for a forward path
PASSWORD_MAX = 256
REASON_MAX = 500  # a decline reason, told to the driver
PAYMENT_TOKEN_MAX = 200
IDEMPOTENCY_KEY_MAX = 255  # an HTTP Idempotency-Key, as the api accepts it
CURSOR_MAX = 100  # the cursors the API gives out are 48 characters
ROLE_MAX = 16
TYPE_MAX = 64  # a notification type ("booking.expiring")
AUDIENCE_MAX = 32  # a template audience ("driver", "owner", ...)
TITLE_MAX = 200  # a notification's title
BODY_MAX = 2000  # a notification's body
TIME_OF_DAY_MAX = 5  # "HH:MM"
TIMEZONE_MAX = 64  # an IANA time zone ("America/Argentina/ComodRivadavia" is 32)
FRAME_TYPE_MAX = 32  # a WebSocket client frame's `type`
TOPIC_MAX = 4 + ID_MAX  # "lot.<uuid>"

# ----- counts -----

MAX_SLOTS_PER_LOT = 5000  # a lot's slots, all at once in one answer
MAX_STAFF_PER_LOT = 200  # every booking event of the lot lists them
MAX_ROLES = 4  # driver, owner, employee, admin
MAX_BULK = 5000  # accounts or vehicles per bulk call
MAX_AUDIENCE_USER_IDS = 10_000  # user ids of one admin send
MAX_MUTED_TYPES = 100
MAX_DATA_KEYS = 32  # keys of an admin send's `data`
DATA_MAX_BYTES = 4096  # an admin send's `data`, encoded as JSON

# ----- numbers -----

PAGE_MAX = 200  # `limit` of every list
# An inbox page ends early rather than pass this many bytes (next_cursor goes on).
PAGE_BYTES_MAX = 512 * 1024
BOOKING_SECONDS_MAX = 30 * 24 * 3600  # a booking lasts at most 30 days
RENEW_GRACE_SECONDS_MAX = 7 * 24 * 3600
MAX_RENEWALS_MAX = 10_000
TOKEN_SECONDS_MAX = 7 * 24 * 3600  # tokens minted by the bulk account call
SEQ_MAX = 2**63 - 1  # a notification seq is a PostgreSQL bigint

# ----- currencies -----

# Active ISO 4217 currency codes (funds, precious metals, test and "no currency" codes
# left out). No maintained package with the list is among Parkmate's dependencies.
CURRENCIES = (
    "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BRL "
    "BSD BTN BWP BYN BZD CAD CDF CHF CLP CNY COP CRC CUP CVE CZK DJF DKK DOP DZD EGP "
    "ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR "
    "IQD IRR ISK JMD JOD JPY KES KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL "
    "LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MYR MZN NAD NGN NIO NOK NPR "
    "NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR SBD SCR SDG SEK SGD "
    "SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD TZS UAH UGX "
    "USD UYU UZS VED VES VND VUV WST XAF XCD XCG XOF XPF YER ZAR ZMW ZWG"
).split()

# ----- the annotated types request Structs use -----


def text(max_length: int, min_length: int = 0, pattern: str = SINGLE_LINE) -> object:
    """msgspec constraints of a string field: at most `max_length` characters, at least
    `min_length`, matching `pattern` (one line of text unless told otherwise)."""
    return msgspec.Meta(min_length=min_length, max_length=max_length, pattern=pattern)


Id = Annotated[str, text(ID_MAX)]
Name = Annotated[str, text(NAME_MAX, 1)]
Address = Annotated[str, text(ADDRESS_MAX, 1)]
SlotLabel = Annotated[str, text(SLOT_LABEL_MAX, 1)]
Plate = Annotated[str, text(PLATE_MAX)]
VehicleLabel = Annotated[str, text(VEHICLE_LABEL_MAX)]
Email = Annotated[str, text(EMAIL_MAX)]
NewPassword = Annotated[str, text(PASSWORD_MAX)]
# Logging in checks the length only: a password is compared, never stored or shown.
Password = Annotated[str, msgspec.Meta(max_length=PASSWORD_MAX)]
Reason = Annotated[str, text(REASON_MAX, 1, MULTI_LINE)]
PaymentToken = Annotated[str, text(PAYMENT_TOKEN_MAX)]
# Compared, never shown: any characters an HTTP header may carry.
IdempotencyKey = Annotated[str, msgspec.Meta(min_length=1, max_length=IDEMPOTENCY_KEY_MAX)]
Cursor = Annotated[str, text(CURSOR_MAX)]
Role = Annotated[str, text(ROLE_MAX)]
NotificationType = Annotated[str, text(TYPE_MAX)]
TemplateAudience = Annotated[str, text(AUDIENCE_MAX)]
Title = Annotated[str, text(TITLE_MAX, 1)]
Body = Annotated[str, text(BODY_MAX, 1, MULTI_LINE)]
TimeOfDay = Annotated[str, text(TIME_OF_DAY_MAX)]
TimeZone = Annotated[str, text(TIMEZONE_MAX)]
Amount = Annotated[str, msgspec.Meta(max_length=len(AMOUNT_MAX), pattern=AMOUNT)]
Currency = Literal[tuple(CURRENCIES)]  # type: ignore[valid-type]

SlotCount = Annotated[int, msgspec.Meta(ge=1, le=MAX_SLOTS_PER_LOT)]
BookingSeconds = Annotated[int, msgspec.Meta(ge=1, le=BOOKING_SECONDS_MAX)]
WarningSeconds = Annotated[int, msgspec.Meta(ge=0, le=BOOKING_SECONDS_MAX - 1)]
GraceSeconds = Annotated[int, msgspec.Meta(ge=0, le=RENEW_GRACE_SECONDS_MAX)]
MaxRenewals = Annotated[int, msgspec.Meta(ge=0, le=MAX_RENEWALS_MAX)]
TokenSeconds = Annotated[int, msgspec.Meta(ge=1, le=TOKEN_SECONDS_MAX)]
PageLimit = Annotated[int, msgspec.Meta(ge=1, le=PAGE_MAX)]
AfterSeq = Annotated[int, msgspec.Meta(ge=0, le=SEQ_MAX)]
Seq = Annotated[int, msgspec.Meta(ge=1, le=SEQ_MAX)]

# ----- explaining a violation -----

_AT = re.compile(r" - at `\$(?P<path>[^`]*)`$")
_UNKNOWN = re.compile(r"^Object contains unknown field `(?P<name>[^`]*)`$")
_REGEX = re.compile(r"^Expected `str` matching regex '(?P<regex>.*)'$")
_MISSING = re.compile(r"^Object missing required field `(?P<name>[^`]*)`$")
_GOT = re.compile(r"^Expected `(?P<want>[^`]+)`, got `(?P<got>\w+)`$")
_JSON_TYPES = {
    "int": "an integer",
    "float": "a number",
    "str": "a string",
    "bool": "true or false",
    "null": "null",
    "object": "an object",
    "array": "an array",
}
_PHRASES = (
    (re.compile(r"^Expected `str` of length <= (\d+)$"), r"must be at most \1 characters"),
    (re.compile(r"^Expected `str` of length >= 1$"), "must not be empty"),
    (re.compile(r"^Expected `str` of length >= (\d+)$"), r"must be at least \1 characters"),
    (re.compile(r"^Expected `array` of length <= (\d+)$"), r"must hold at most \1 items"),
    (re.compile(r"^Expected `object` of length <= (\d+)$"), r"must have at most \1 keys"),
    (re.compile(r"^Expected `int` >= (-?\d+)$"), r"must be at least \1"),
    (re.compile(r"^Expected `int` <= (-?\d+)$"), r"must be at most \1"),
)


def explain(message: str) -> tuple[str, str]:
    """(field, sentence) for the text of a msgspec.ValidationError.

    `field` is the path of the offending value ("name", "price_per_hour.amount",
    "users[3].full_name"; "body" for the document itself); the sentence names it and
    says what is expected, e.g. ("name", "name must be at most 200 characters.").
    Text in another shape is kept as it is.
    """
    found = _AT.search(message)
    path = found["path"].lstrip(".") if found else ""
    rule = message[: found.start()] if found else message
    unknown = _UNKNOWN.match(rule)
    if unknown:
        field = f"{path}.{unknown['name']}" if path else unknown["name"]
        return field, f"{field} is not a known field; remove it (see /schema for the fields)."
    missing = _MISSING.match(rule)
    if missing:
        field = f"{path}.{missing['name']}" if path else missing["name"]
        return field, f"{field} is required."
    field = path or "body"
    got = _GOT.match(rule)
    if got:
        want = " or ".join(_JSON_TYPES.get(t, f"`{t}`") for t in got["want"].split(" | "))
        return field, f"{field} must be {want}, not {_JSON_TYPES.get(got['got'], got['got'])}."
    if rule.startswith("Invalid enum value "):
        if field.endswith("currency"):
            return field, f"{field} must be an ISO 4217 currency code such as EUR or USD."
        return field, f"{field}: {rule}; see /schema for the values allowed."
    regex = _REGEX.match(rule)
    if regex:
        described = PATTERN_RULES.get(regex["regex"].replace("\\\\", "\\"))
        if described:
            return field, f"{field} {described}."
    for pattern, phrase in _PHRASES:
        if pattern.match(rule):
            return field, f"{field} {pattern.sub(phrase, rule)}."
    return field, f"{field}: {rule}."
