"""Bulk accounts and vehicles (POST /api/v1/admin/users/bulk, /admin/vehicles/bulk): only
admins, every entry checked, set-based inserts, one user.registered per account."""

import msgspec
import nats
import pytest

from services.api import identity
from services.contracts.ids import uuid7
from tests.integration.test_api import KEYS, api, auth  # noqa: F401 (fixture)
from tests.support import eventually


def token(roles: list[str]) -> str:
    return identity.issue_token(KEYS, str(uuid7()), roles, 600)


def people(*names: str) -> list[dict]:
    return [{"email": f"{n}@bulk.example", "full_name": n.title()} for n in names]


@pytest.fixture
def admin() -> dict:
    return auth(token(["admin"]))


async def test_only_admins_create_in_bulk(api):  # noqa: F811
    driver = auth(token(["driver"]))
    r = await api.post("/admin/users/bulk", json={"users": people("a")}, headers=driver)
    assert r.status_code == 403
    r = await api.post(
        "/admin/vehicles/bulk",
        json={"vehicles": [{"user_id": str(uuid7()), "plate": "AB12CDE"}]},
        headers=driver,
    )
    assert r.status_code == 403
    r = await api.post("/admin/users/bulk", json={"users": people("a")})
    assert r.status_code == 401


@pytest.mark.parametrize(
    ("body", "names"),
    [
        ({"users": []}, "1 to 5000"),
        ({"users": [*people("a"), {"email": "not-an-email", "full_name": "B"}]}, "users[1]"),
        ({"users": people("a", "a")}, "appears twice"),
        ({"users": [{"email": "c@bulk.example", "full_name": "C", "roles": ["king"]}]}, "king"),
        ({"users": [{"email": "d@bulk.example", "full_name": " "}]}, "full_name"),
        ({"users": people("e"), "token_seconds": 0}, "token_seconds"),
        ({"users": people("f"), "password": "short"}, "password"),
    ],
)
async def test_bad_requests_are_400_naming_the_problem(api, admin, body, names):  # noqa: F811
    r = await api.post("/admin/users/bulk", json=body, headers=admin)
    assert r.status_code == 400, r.text
    assert names in r.json()["detail"]


async def test_accounts_come_with_tokens_and_user_registered_events(
    api,  # noqa: F811
    admin,
    nats_url,
):
    r = await api.post(
        "/admin/users/bulk",
        json={
            "users": [
                *people("ann", "bob"),
                {"email": "Cy@Bulk.example", "full_name": "Cy", "roles": ["owner"]},
            ],
            "token_seconds": 300,
        },
        headers=admin,
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["expires_in"] == 300 and body["token_type"] == "bearer"
    items = body["items"]
    assert [u["email"] for u in items] == [
        "ann@bulk.example",
        "bob@bulk.example",
        "cy@bulk.example",
    ]
    assert [u["roles"] for u in items] == [["driver"], ["driver"], ["owner"]]
    for u in items:
        me = await api.get("/me", headers=auth(u["access_token"]))
        assert me.status_code == 200 and me.json()["id"] == u["id"]
    # No password was given: these accounts cannot log in with one.
    login = await api.post("/auth/login", json={"email": "ann@bulk.example", "password": "x" * 9})
    assert login.status_code == 401

    nc = await nats.connect(nats_url)
    try:
        sub = await nc.jetstream().subscribe("user.registered", stream="EVENTS")

        seen: set[str] = set()

        async def all_three():
            try:
                while True:
                    msg = await sub.next_msg(timeout=0.2)
                    seen.add(msgspec.json.decode(msg.data)["data"]["user_id"])
            except Exception:
                pass
            return {u["id"] for u in items} <= seen

        await eventually(all_three, timeout=10)
    finally:
        await nc.close()


async def test_a_taken_email_is_409_and_nothing_is_created(api, admin):  # noqa: F811
    first = await api.post(
        "/admin/users/bulk",
        json={"users": people("dee"), "password": "shared-secret"},
        headers=admin,
    )
    assert first.status_code == 201
    login = await api.post(
        "/auth/login", json={"email": "dee@bulk.example", "password": "shared-secret"}
    )
    assert login.status_code == 200  # one shared password, hashed once per call
    again = await api.post("/admin/users/bulk", json={"users": people("eve", "dee")}, headers=admin)
    assert again.status_code == 409
    assert again.json()["extra"]["emails"] == ["dee@bulk.example"]
    eve = await api.post(
        "/auth/register",
        json={"email": "eve@bulk.example", "password": "secret-pw", "full_name": "Eve"},
    )
    assert eve.status_code == 201  # eve was not created by the refused call


async def test_vehicles_in_bulk(api, admin):  # noqa: F811
    users = (
        await api.post("/admin/users/bulk", json={"users": people("fay", "gus")}, headers=admin)
    ).json()["items"]
    r = await api.post(
        "/admin/vehicles/bulk",
        json={
            "vehicles": [
                {"user_id": users[0]["id"], "plate": "ab-12 cde", "label": "red"},
                {"user_id": users[1]["id"], "plate": "XY99ZZZ"},
            ]
        },
        headers=admin,
    )
    assert r.status_code == 201, r.text
    made = r.json()["items"]
    assert [(v["user_id"], v["plate"]) for v in made] == [
        (users[0]["id"], "AB12CDE"),
        (users[1]["id"], "XY99ZZZ"),
    ]
    mine = (await api.get("/vehicles", headers=auth(users[0]["access_token"]))).json()["items"]
    assert [v["id"] for v in mine] == [made[0]["id"]]

    unknown = await api.post(
        "/admin/vehicles/bulk",
        json={
            "vehicles": [
                {"user_id": users[0]["id"], "plate": "QQ11QQQ"},
                {"user_id": str(uuid7()), "plate": "QQ22QQQ"},
            ]
        },
        headers=admin,
    )
    assert unknown.status_code == 400 and "vehicles[1]" in unknown.json()["detail"]
    bad_plate = await api.post(
        "/admin/vehicles/bulk",
        json={"vehicles": [{"user_id": users[0]["id"], "plate": "!"}]},
        headers=admin,
    )
    assert bad_plate.status_code == 400 and "vehicles[0]" in bad_plate.json()["detail"]
    taken = await api.post(
        "/admin/vehicles/bulk",
        json={
            "vehicles": [
                {"user_id": users[1]["id"], "plate": "NEW1"},
                {"user_id": users[0]["id"], "plate": "AB12CDE"},
            ]
        },
        headers=admin,
    )
    assert taken.status_code == 409 and "vehicles[1]" in taken.json()["detail"]
    theirs = (await api.get("/vehicles", headers=auth(users[1]["access_token"]))).json()["items"]
    assert len(theirs) == 1  # NEW1 was rolled back with the conflict
