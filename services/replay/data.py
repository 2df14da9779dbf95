"""The UCI "Parking Birmingham" readings: parse, clean and bin one day, with no I/O.

Source: Birmingham City Council / NCP car parks, via the UCI Machine Learning
Repository (Stolfi, Alba & Yao 2017), Open Government Licence v3.0; docs/data.md gives
the format and the quirks handled here ("Quirks"), services/replay/dataset.py reads
the file.

Cleaning, each choice counted in `CleaningLog`:
1. Exact duplicate rows are dropped (the file has 216; a (car park, time) pair never
   has two different occupancies).
2. Readings are binned to the 30-minute grid by rounding each local timestamp to the
   nearest boundary (08:00, 08:30, ...). A reading up to one bin outside the requested
   window counts for the window's first or last boundary (2016-12-16's first reading of
   NCP Grand Central is at 07:40); readings further out are dropped as off the grid.
3. When two readings of one car park round to the same boundary, the one closer to it
   is kept.
4. Occupancy is clamped to [0, capacity] (373 rows are above capacity, 12 below zero).
5. A boundary a car park did not report is filled by linear interpolation between its
   neighbours (rounded), or by the nearest reading at the ends of the day; a car park
   with readings at fewer than half the boundaries that day is left out.

Times are local (UK) wall-clock times as in the file; the replay only uses seconds
since midnight, so the BST change on 2016-10-30 does not matter within one day.
"""

import csv
import io
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime

BIN_SECONDS = 1800

# SystemCodeNumber -> name (docs/data.md, "Car parks": names from the same source's
# later snapshot; the capacities used are the CSV's).
NAMES = {
    "BHMBCCMKT01": "Markets",
    "BHMBCCPST01": "Pershore Street",
    "BHMBCCSNH01": "Snow Hill",
    "BHMBCCTHL01": "Town Hall",
    "BHMBRCBRG01": "Bull Ring Centre",
    "BHMBRCBRG02": "Moor Street",
    "BHMBRCBRG03": "Edgbaston Street (by Debenhams)",
    "BHMBRTARC01": "Arena Central",
    "BHMEURBRD01": "Broad Street 1",
    "BHMEURBRD02": "Broad Street 2",
    "BHMMBMMBX01": "Mailbox",
    "BHMNCPHST01": "NCP High Street",
    "BHMNCPLDH01": "NCP Londonderry House",
    "BHMNCPNHS01": "NCP Newhall Street",
    "BHMNCPNST01": "NCP New Street",
    "BHMNCPPLS01": "NCP Grand Central",
    "BHMNCPRAN01": "NCP Royal Angus",
    "Broad Street": "Broad Street",
    "Bull Ring": "Bull Ring",
    "NIA Car Parks": "NIA Car Parks",
    "NIA North": "NIA - North",
    "NIA South": "NIA - South",
    "Others-CCCPS105a": "Others-CCCPS105a",
    "Others-CCCPS119a": "Others-CCCPS119a",
    "Others-CCCPS133": "Others-CCCPS133",
    "Others-CCCPS135a": "Others-CCCPS135a",
    "Others-CCCPS202": "Others-CCCPS202",
    "Others-CCCPS8": "Others-CCCPS8",
    "Others-CCCPS98": "Others-CCCPS98",
    "Shopping": "Shopping",
}

HEADER = ["SystemCodeNumber", "Capacity", "Occupancy", "LastUpdated"]


@dataclass(frozen=True)
class Reading:
    """One row: car park code, capacity and occupancy (cars), local timestamp."""

    code: str
    capacity: int
    occupancy: int
    at: datetime


def parse_csv(text: str) -> list[Reading]:
    """Every row of the CSV text, in file order (duplicates kept).

    Raises ValueError naming the line when the header or a row is malformed.
    """
    rows = csv.reader(io.StringIO(text))
    header = next(rows, None)
    if header != HEADER:
        raise ValueError(f"line 1: expected header {','.join(HEADER)}, got {header!r}")
    out = []
    for number, row in enumerate(rows, start=2):
        if not row:
            continue
        try:
            code, capacity, occupancy, at = row
            out.append(
                Reading(
                    code=code,
                    capacity=int(capacity),
                    occupancy=int(occupancy),
                    at=datetime.strptime(at, "%Y-%m-%d %H:%M:%S"),
                )
            )
        except ValueError as e:
            raise ValueError(
                f"line {number}: {row!r} is not code,capacity,occupancy,time: {e}"
            ) from None
    return out


@dataclass
class CleaningLog:
    """What cleaning did to the day's rows (counts of rows or boundaries)."""

    rows: int = 0
    duplicates: int = 0
    off_grid: int = 0
    same_bin: int = 0
    clamped_high: int = 0
    clamped_low: int = 0
    interpolated: int = 0
    dropped_lots: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class LotSeries:
    """One car park's cleaned occupancy (cars) at each boundary of the day."""

    code: str
    name: str
    capacity: int
    occupancy: tuple[int, ...]


@dataclass(frozen=True)
class DayData:
    """The cleaned day: boundaries every `bin_seconds` from `start_seconds` (seconds
    since local midnight), and each car park's occupancy at every boundary."""

    day: date
    start_seconds: int
    bin_seconds: int
    lots: tuple[LotSeries, ...]
    log: CleaningLog

    @property
    def boundaries(self) -> list[int]:
        """Seconds since midnight of every boundary, first to last."""
        count = len(self.lots[0].occupancy) if self.lots else 0
        return [self.start_seconds + i * self.bin_seconds for i in range(count)]

    def city(self) -> list[int]:
        """Cars in all car parks together at each boundary."""
        return [sum(values) for values in zip(*(lot.occupancy for lot in self.lots), strict=True)]


def hhmm(seconds: float) -> str:
    """Seconds since midnight as HH:MM."""
    minutes = round(seconds / 60)
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def clean_day(
    readings: list[Reading],
    day: date,
    start_hour: float = 8.0,
    end_hour: float = 16.5,
    lots: list[str] | None = None,
    bin_seconds: int = BIN_SECONDS,
) -> DayData:
    """Clean and bin one day's readings (see the module docstring for each rule).

    `start_hour` and `end_hour` are the first and last boundary (hours since local
    midnight, on the 30-minute grid); `lots` restricts to those codes (all when None).
    Raises ValueError for a window off the grid, an unknown code, or a day with no
    usable car park.
    """
    start = round(start_hour * 3600)
    end = round(end_hour * 3600)
    if start % bin_seconds or end % bin_seconds or end <= start:
        raise ValueError(
            f"start and end must be on the {bin_seconds // 60}-minute grid with start < end "
            f"(got {start_hour} and {end_hour} hours)"
        )
    if lots is not None:
        unknown = sorted(set(lots) - {r.code for r in readings})
        if unknown:
            raise ValueError(
                f"unknown car park code(s) {', '.join(unknown)}; docs/data.md lists the codes "
                "(SystemCodeNumber)"
            )
    count = (end - start) // bin_seconds + 1
    log = CleaningLog()
    seen: set[Reading] = set()
    best: dict[tuple[str, int], tuple[float, int]] = {}
    capacity: dict[str, Counter] = {}
    for r in readings:
        if r.at.date() != day or (lots is not None and r.code not in lots):
            continue
        log.rows += 1
        if r in seen:
            log.duplicates += 1
            continue
        seen.add(r)
        capacity.setdefault(r.code, Counter())[r.capacity] += 1
        seconds = r.at.hour * 3600 + r.at.minute * 60 + r.at.second
        index = (seconds - start + bin_seconds // 2) // bin_seconds
        if start - bin_seconds <= seconds <= end + bin_seconds:
            index = min(max(index, 0), count - 1)  # just outside: the edge boundary
        if not 0 <= index < count:
            log.off_grid += 1
            continue
        distance = abs(seconds - (start + index * bin_seconds))
        key = (r.code, index)
        if key in best:
            log.same_bin += 1
            if best[key][0] <= distance:
                continue
        best[key] = (distance, r.occupancy)
    series = []
    for code in sorted(capacity):
        cap = capacity[code].most_common(1)[0][0]
        known = {i: occ for (c, i), (_, occ) in best.items() if c == code}
        if len(known) * 2 < count:
            log.dropped_lots[code] = f"readings at {len(known)} of {count} boundaries"
            continue
        values = []
        for i in range(count):
            if i in known:
                raw = known[i]
            else:
                log.interpolated += 1
                raw = _fill(known, i)
            if raw > cap:
                log.clamped_high += 1
            elif raw < 0:
                log.clamped_low += 1
            values.append(min(max(raw, 0), cap))
        series.append(LotSeries(code, NAMES.get(code, code), cap, tuple(values)))
    if not series:
        raise ValueError(f"no car park has usable readings on {day.isoformat()}")
    return DayData(day, start, bin_seconds, tuple(series), log)


def _fill(known: dict[int, int], i: int) -> int:
    before = [k for k in known if k < i]
    after = [k for k in known if k > i]
    if not before:
        return known[min(after)]
    if not after:
        return known[max(before)]
    a, b = max(before), min(after)
    return round(known[a] + (known[b] - known[a]) * (i - a) / (b - a))
