"""The Parking Birmingham data set packaged with Parkmate (docs/data.md): it is the
documented file, and 2016-12-16 cleans to the day the replay figures describe."""

import gzip
import hashlib
from datetime import date, datetime

import pytest

from services.replay import dataset
from services.replay.data import clean_day, parse_csv
from services.replay.plan import make_plan, summarise

SHA256 = "f1e28b9c697769a1a05cd20148241b60b1a73fee4907611163efc6fd9d12770a"
HEADER = "SystemCodeNumber,Capacity,Occupancy,LastUpdated\n"


@pytest.fixture(scope="module")
def readings():
    return parse_csv(dataset.read_text())


def test_the_packaged_copy_is_the_documented_file(readings):
    text = dataset.read_text()
    assert len(text.encode()) == 1_479_909
    assert hashlib.sha256(text.encode()).hexdigest() == SHA256
    assert len(readings) == 35_717
    assert len({r.code for r in readings}) == 30
    assert min(r.at for r in readings) == datetime(2016, 10, 4, 7, 46, 28)
    assert max(r.at for r in readings) == datetime(2016, 12, 19, 16, 30, 35)
    assert len(set(readings)) == 35_717 - 216  # exact duplicate rows


def test_2016_12_16_is_a_complete_day_of_29_car_parks(readings):
    day = clean_day(readings, date(2016, 12, 16))
    assert len(day.lots) == 29
    assert "NIA North" not in {lot.code for lot in day.lots}
    assert all(len(lot.occupancy) == 18 for lot in day.lots)
    log = day.log
    assert (log.rows, log.duplicates, log.off_grid, log.interpolated) == (522, 0, 0, 0)
    assert log.clamped_high == 9 and not log.dropped_lots
    assert sum(lot.capacity for lot in day.lots) == 39_476
    city = day.city()
    assert city[0] == 9_132  # 08:00
    assert max(city) == 23_569 and day.boundaries[city.index(max(city))] == 13.5 * 3600
    s = summarise(make_plan(day, seed=1))
    assert (s.cars, s.warm_up, s.arrivals) == (24_268, 9_132, 15_136)
    assert s.cancels + s.expiries_in_day == 5_034  # departures during the day


def test_a_named_file_may_be_plain_or_gzip(tmp_path):
    text = HEADER + "Broad Street,690,48,2016-12-16 07:59:09\n"
    plain = tmp_path / "day.csv"
    plain.write_text(text)
    packed = tmp_path / "day.csv.gz"
    packed.write_bytes(gzip.compress(text.encode()))
    assert dataset.read_text(plain) == text
    assert dataset.read_text(packed) == text
    broken = tmp_path / "broken.csv.gz"
    broken.write_bytes(gzip.compress(text.encode())[:20])
    with pytest.raises(OSError):
        dataset.read_text(broken)
    with pytest.raises(OSError):
        dataset.read_text(tmp_path / "missing.csv")
