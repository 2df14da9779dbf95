"""Messages produced by the api service about users (schema `identity`)."""

import msgspec


class UserRegisteredData(msgspec.Struct, kw_only=True):
    """`data` of user.registered."""

    user_id: str
    email: str
    full_name: str
    roles: list[str]
