"""Cost of the timers service's ScheduleBook once it is full, against a plain dict.

    .venv/bin/python -m benchmarks.schedule_book [--size 100000] [--rounds 4]

The book remembers the last schedule stored on each subject, up to `--size` subjects,
and drops the oldest when a new one comes: on a whole day's replay it is full within
the first hours and drops an entry for every one it stores. A plain dict doing the same
(`del d[next(iter(d))]`) finds its oldest key by scanning past every key it dropped
since it last resized, so a store costs more the longer the book has been full; the
book is an OrderedDict, whose oldest entry is at hand. For each round of `--size`
stores on a full book this prints the microseconds per store of both, in this process
(`time.perf_counter`; one noisy run, so compare the two columns, not runs). Asserts
nothing.
"""

import argparse
import time
from datetime import UTC, datetime, timedelta

from services.timers.domain import ScheduleBook, Stored


class _DictBook:
    """ScheduleBook.stored's policy on a plain dict (the code before the OrderedDict)."""

    def __init__(self, max_subjects: int) -> None:
        self.max_subjects = max_subjects
        self._stored: dict[str, Stored] = {}

    def stored(self, subject: str, seq: int, version: int, fire_at: datetime) -> None:
        self._stored.pop(subject, None)
        self._stored[subject] = Stored(seq, version, fire_at)
        while len(self._stored) > self.max_subjects:
            del self._stored[next(iter(self._stored))]


def _per_store(book, subjects: list[str], fire_at: datetime) -> float:
    start = time.perf_counter()
    for seq, subject in enumerate(subjects):
        book.stored(subject, seq, 1, fire_at)
    return (time.perf_counter() - start) / len(subjects) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=100_000, help="subjects the book keeps")
    parser.add_argument("--rounds", type=int, default=4, help="rounds of --size stores")
    args = parser.parse_args()
    fire_at = datetime.now(UTC) + timedelta(hours=1)
    subjects = [
        f"timers.schedule.booking.{i:026d}.warning" for i in range(args.size * (args.rounds + 1))
    ]
    books = {"ScheduleBook": ScheduleBook(args.size), "plain dict": _DictBook(args.size)}
    for book in books.values():
        _per_store(book, subjects[: args.size], fire_at)  # full
    print(f"µs per store on a full book of {args.size:,} subjects, by round of {args.size:,}")
    print(f"{'round':>5} {'ScheduleBook':>13} {'plain dict':>11}")
    for r in range(1, args.rounds + 1):
        chunk = subjects[r * args.size : (r + 1) * args.size]
        figures = [_per_store(book, chunk, fire_at) for book in books.values()]
        print(f"{r:>5} {figures[0]:>13.2f} {figures[1]:>11.2f}")


if __name__ == "__main__":
    main()
