"""`parkmate replay`: load and clean the day, plan it, run the simulation with a progress
bar while measuring every process's CPU over the day part, then print and write the
report."""

import asyncio
import contextlib
import signal
import sys
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from services.replay import cpu, data, dataset, report
from services.replay.plan import make_plan, summarise
from services.replay.simulation import Options, Simulation


@dataclass
class Result:
    """The simulation and its report (for callers such as tests)."""

    simulation: Simulation
    report: dict[str, Any]
    failures: list[str]


def load_plan(
    path: Path | None, day: date, start: float, end: float, lots: list[str] | None, seed: int
):
    """The cleaned day and its plan, from the CSV at `path` (plain or gzip) or the
    packaged data set when None; raises ValueError on bad data or arguments, OSError
    when the file cannot be read."""
    readings = data.parse_csv(dataset.read_text(path))
    return make_plan(data.clean_day(readings, day, start, end, lots), seed)


async def _ticker(sim: Simulation, bar, stop: asyncio.Event) -> None:
    while not stop.is_set():
        if sim.origin and time.time() >= sim.origin:
            now = time.time()
            bar.n = round(min(max(0.0, now - sim.origin), bar.total), 1)
            s = sim.stats
            bar.set_postfix_str(
                f"{data.hhmm(sim.day(now))} active {sim.active} made {s.made} "
                f"renewed {s.renewed} cancelled {s.cancelled} expired {s.let_expire}",
                refresh=False,
            )
            bar.refresh()
        try:
            await asyncio.wait_for(stop.wait(), 0.5)
        except TimeoutError:
            pass


async def _measure(sim: Simulation, meter: cpu.Meter, marks: dict[str, cpu.Sample]) -> None:
    """Sample every process's CPU when the first car is due and again when the last car
    is done (or the replay is interrupted)."""
    await sim.day_started.wait()
    await sim.until(sim.origin)
    marks["start"] = await meter.sample()
    await sim.day_over.wait()
    marks["end"] = await meter.sample()


async def replay(
    plan,
    options: Options,
    report_dir: Path | None,
    progress: bool = True,
    bounds: report.Bounds | None = None,
    meter: cpu.Meter | None = None,
) -> Result:
    """Run the replay of `plan` and return its report (written to `report_dir`), judged
    against `bounds` (None: the defaults); `meter` reads the processes' CPU (None: only
    the replay's own)."""
    sim = Simulation(plan, options)
    meter = meter or cpu.Meter.replay_only("no process list given")
    marks: dict[str, cpu.Sample] = {}
    measuring = asyncio.create_task(_measure(sim, meter, marks))
    out = sys.stderr
    summary = summarise(plan)
    print(
        f"replay: {summary.cars} cars ({summary.warm_up} already parked at "
        f"{data.hhmm(plan.data.start_seconds)}, {summary.arrivals} arrivals), "
        f"{summary.cancels} cancel and {summary.expiries_in_day} let the booking expire "
        f"during the day, {summary.stay} stay; about {summary.renewals} renewals",
        file=out,
        flush=True,
    )
    stop = asyncio.Event()
    ticker = None
    bar = None
    if progress:
        from tqdm import tqdm

        total = (plan.last + plan.booking_seconds - plan.first) / options.speed
        bar = tqdm(total=round(total, 1), unit="s", desc="replay", file=out, dynamic_ncols=True)
        ticker = asyncio.create_task(_ticker(sim, bar, stop))
    loop = asyncio.get_running_loop()
    interrupt = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, interrupt.set)
    try:
        running = asyncio.create_task(sim.run())
        waiter = asyncio.create_task(interrupt.wait())
        await asyncio.wait([running, waiter], return_when=asyncio.FIRST_COMPLETED)
        if not running.done():  # Ctrl-C or SIGTERM: stop and report what happened so far
            sim.interrupted_at = time.time()
            sim.day_over.set()
            running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await running
        else:
            waiter.cancel()
            running.result()
        if "start" in marks:  # the end sample follows within moments
            await measuring
    finally:
        measuring.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await measuring
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        stop.set()
        if ticker is not None:
            await ticker
        if bar is not None:
            bar.close()
    renewals = len(sim.stats.renew_latency)
    usage = cpu.figures(marks.get("start"), marks.get("end"), renewals, meter.why_not)
    figures = report.build(sim, sim.owner_expired, sim.final_counts, bounds, usage)
    text = report.render(figures)
    print(text, flush=True)
    if report_dir is not None:
        paths = report.write(figures, report_dir)
        print(f"report written to {', '.join(str(p) for p in paths)}", flush=True)
    return Result(sim, figures, report.failures(figures))
