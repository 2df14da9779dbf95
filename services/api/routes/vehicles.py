"""Vehicle routes: a driver registers vehicles and books with one of them."""

import msgspec
from litestar import Request, get, post
from litestar.di import NamedDependency
from litestar.params import JSONBody

from services.api.errors import responses
from services.api.routes.common import ask, deps
from services.contracts import bookings as c
from services.contracts import subjects as s
from services.contracts.bookings import Actor
from services.contracts.limits import Plate, VehicleLabel


class VehicleIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """`plate` is normalised (upper case, spaces and dashes dropped); `label` is free text."""

    plate: Plate
    label: VehicleLabel | None = None


@post(
    "/vehicles",
    status_code=201,
    dependencies=deps,
    responses=responses(400, 401, 403, 409, 422),
    summary="Register a vehicle (driver)",
)
async def create_vehicle(
    request: Request, data: JSONBody[VehicleIn], actor: NamedDependency[Actor]
) -> c.VehicleView:
    """201 the vehicle; 409 when you already registered that plate."""
    return await ask(
        request,
        s.BOOKINGS_VEHICLE_CREATE,
        c.CreateVehicle(actor=actor, plate=data.plate, label=data.label),
        c.VehicleView,
    )


@get("/vehicles", dependencies=deps, responses=responses(401), summary="Your vehicles")
async def list_vehicles(request: Request, actor: NamedDependency[Actor]) -> c.VehicleList:
    return await ask(request, s.BOOKINGS_VEHICLE_LIST, c.ListVehicles(actor=actor), c.VehicleList)


routes = [create_vehicle, list_vehicles]
