"""The traffic plan of a replayed day: which car arrives and leaves when, with no I/O.

All times here are seconds since local midnight of the replayed day ("day seconds");
the simulation maps them to wall-clock time by the speed. The plan is a pure function
of the cleaned data and the seed.

- The data give occupancy (a stock), not flows: the rise of a car park's occupancy
  between two boundaries is that many arrivals, a fall that many departures
  (docs/data.md, "Quirks", stocks not flows). Turnover inside a bin is invisible and
  not invented.
- Cars present at the first boundary arrive during a warm-up hour before it, at times
  spread uniformly, so their bookings (one hour each) end spread over the first hour
  instead of all at once.
- Arrivals and departures of a bin happen at times spread uniformly over the bin, away
  from its boundaries by `margin` seconds, so occupancy is steady at each boundary.
- Who leaves: cars present at the bin's start, chosen uniformly at random. A chosen
  car whose booking (made at arrival, renewed every hour) ends inside the bin, at least
  two margins before its end, leaves at that end: it lets the booking expire. Every
  other chosen car leaves at a random time in the bin and cancels.
- Cars still parked at the last boundary stay: they do not renew again, so their
  bookings expire during the hour after the last boundary.
"""

import math
import random
from dataclasses import dataclass

from services.replay.data import DayData

HOUR = 3600
WARNING = 300
MARGIN = 180


@dataclass(frozen=True)
class Car:
    """One car, which is one driver. `lot` indexes `DayData.lots`; `arrive` and `leave`
    are day seconds (`leave` None: still parked at the last boundary); `at_end`: it
    leaves by letting its booking expire at `leave` (else it cancels at `leave`)."""

    index: int
    lot: int
    arrive: float
    leave: float | None = None
    at_end: bool = False


@dataclass(frozen=True)
class Plan:
    """Cars in arrival order, with the day's timing (day seconds)."""

    data: DayData
    cars: tuple[Car, ...]
    seed: int
    booking_seconds: int = HOUR
    warning_seconds: int = WARNING
    margin: int = MARGIN

    @property
    def first(self) -> float:
        """Start of the warm-up hour (day seconds)."""
        return self.data.start_seconds - self.booking_seconds

    @property
    def last(self) -> float:
        """The last boundary (day seconds): no arrival or departure after it."""
        return self.data.boundaries[-1]

    def stay_until(self, car: Car) -> float:
        """Until when the car stays (day seconds): its departure, or the last boundary."""
        return self.last if car.leave is None else car.leave

    def bin_end(self, t: float) -> float:
        """The boundary that closes the bin holding day second `t`."""
        start, size = self.data.start_seconds, self.data.bin_seconds
        return start + ((t - start) // size + 1) * size

    def occupancy(self, lot: int, t: float) -> int:
        """Cars of the plan in `lot` at day second `t` (a car counts from its arrival
        until its departure)."""
        return sum(
            1
            for c in self.cars
            if c.lot == lot and c.arrive <= t and (c.leave is None or c.leave > t)
        )

    def sample(self, count: int) -> list[int]:
        """`count` car indexes chosen at random (by the seed) to watch on a socket."""
        rng = random.Random(f"{self.seed}:sockets")
        count = min(count, len(self.cars))
        return sorted(rng.sample(range(len(self.cars)), count))


def planned_end(arrive: float, t: float, period: float) -> float:
    """End of the booking period running at day second `t` for a car that booked at
    `arrive` and renews every `period` seconds (the first end after `t`)."""
    periods = int((t - arrive) // period) + 1
    return arrive + periods * period


def make_plan(data: DayData, seed: int = 1) -> Plan:
    """The plan for `data`, deterministic for a given `seed` (see module docstring)."""
    rng = random.Random(seed)
    bounds = data.boundaries
    raw: list[tuple[int, float, float | None, bool]] = []
    for lot_index, lot in enumerate(data.lots):
        present: list[list] = []  # [arrive, leave, at_end], mutable while planning
        lo, hi = bounds[0] - HOUR, bounds[0] - MARGIN
        for t in sorted(rng.uniform(lo, hi) for _ in range(lot.occupancy[0])):
            present.append([t, None, False])
        cars = list(present)
        for k in range(len(bounds) - 1):
            lo, hi = bounds[k] + MARGIN, bounds[k + 1] - MARGIN
            change = lot.occupancy[k + 1] - lot.occupancy[k]
            if change > 0:
                for t in sorted(rng.uniform(lo, hi) for _ in range(change)):
                    car = [t, None, False]
                    cars.append(car)
                    present.append(car)
            elif change < 0:
                leaving = rng.sample(range(len(present)), -change)
                for i in leaving:
                    car = present[i]
                    end = planned_end(car[0], bounds[k], HOUR)
                    if lo <= end <= hi - MARGIN:
                        car[1], car[2] = end, True
                    else:
                        car[1] = rng.uniform(lo, hi)
                gone = set(leaving)
                present = [c for i, c in enumerate(present) if i not in gone]
        raw += [(lot_index, c[0], c[1], c[2]) for c in cars]
    raw.sort(key=lambda c: (c[1], c[0]))
    cars = tuple(
        Car(index=i, lot=lot, arrive=arrive, leave=leave, at_end=at_end)
        for i, (lot, arrive, leave, at_end) in enumerate(raw)
    )
    return Plan(data=data, cars=cars, seed=seed)


@dataclass(frozen=True)
class PlanSummary:
    """Counts a plan implies: cars, arrivals during the day, departures (by cancel or by
    expiry), and the renewals drivers will make (day time, before clock drift)."""

    cars: int
    warm_up: int
    arrivals: int
    cancels: int
    expiries_in_day: int
    stay: int
    renewals: int


def summarise(plan: Plan) -> PlanSummary:
    """Counts of `plan` (see PlanSummary)."""
    start = plan.data.start_seconds
    renewals = 0
    for c in plan.cars:
        # A car renews at the warning of every period that ends before it leaves.
        periods = math.ceil((plan.stay_until(c) - c.arrive) / plan.booking_seconds)
        renewals += max(0, periods - 1)
    return PlanSummary(
        cars=len(plan.cars),
        warm_up=sum(1 for c in plan.cars if c.arrive < start),
        arrivals=sum(1 for c in plan.cars if c.arrive >= start),
        cancels=sum(1 for c in plan.cars if c.leave is not None and not c.at_end),
        expiries_in_day=sum(1 for c in plan.cars if c.at_end),
        stay=sum(1 for c in plan.cars if c.leave is None),
        renewals=renewals,
    )
