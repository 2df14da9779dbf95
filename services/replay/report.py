"""The replay's report: counts, latencies, notification lateness, occupancy against the
data, the CPU each process spent per renewal, the verdict against its bounds, and a PNG
plot (matplotlib, Agg backend: no display needed).

Lateness of a notification = its arrival on the driver's socket minus the time the
server scheduled it: end_time - warning_seconds for `booking.expiring`, end_time for
`booking.expired` (end_time as the server returned it, after renewals). Seconds.
"""

import json
import math
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from services.replay.data import hhmm
from services.replay.simulation import EXPIRED, WARNING, Simulation


@dataclass(frozen=True)
class Bounds:
    """What a replay must hold beyond exactness: warning and expiry lateness p99 on the
    socket at most `max_lateness` seconds, and at least `min_occupancy` (a fraction,
    0 to 1) of the lot-boundary checks equal to the data once settled."""

    max_lateness: float = 1.0
    min_occupancy: float = 0.99


def percentile(values: list[float], q: float) -> float | None:
    """The q-th percentile (0-100, nearest rank) of `values`, or None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def spread(values: list[float], points=(50, 95, 99)) -> dict[str, float | None]:
    """{"count", "p50", "p95", "p99", "max"} of `values` (seconds)."""
    out: dict[str, Any] = {"count": len(values)}
    for q in points:
        out[f"p{q}"] = percentile(values, q)
    out["max"] = max(values) if values else None
    return out


# Missing and unexpected notifications listed in report.json, at most this many of each.
EXAMPLES = 20


def _example(car: int, booking_id: str, end: float, arrival: float | None = None) -> dict:
    """A notification to look up on the server: the car (its index in the plan), the
    booking id and the booking end it named (epoch seconds, shown ISO 8601 UTC), and
    for one received, when it arrived (epoch seconds)."""
    out: dict[str, Any] = {
        "car": car,
        "booking_id": booking_id,
        "end": datetime.fromtimestamp(end, UTC).isoformat(),
    }
    if arrival is not None:
        out["arrival"] = arrival
    return out


def notification_figures(sim: Simulation) -> dict[str, Any]:
    """Lateness, early, missing, duplicate and unexpected notifications of the sample."""
    warning_of = {i: sim.lots[sim.plan.cars[i].lot].warning_seconds for i in sim.watchers}
    expected = {(t, p.booking_id, round(p.end * 1000)) for t, p in sim.expected()}
    periods = {(p.booking_id, round(p.end * 1000)): p for p in sim.periods}
    out: dict[str, Any] = {"sampled_drivers": len(sim.watchers)}
    reconnects = sum(w.reconnects for w in sim.watchers.values())
    for kind, name in ((WARNING, "warnings"), (EXPIRED, "expiries")):
        late, stored, early, seen, unexpected, raced = [], [], 0, Counter(), 0, 0
        strays: list[dict[str, Any]] = []
        for car, w in sim.watchers.items():
            for r in w.received:
                if r.type != kind:
                    continue
                key = (kind, r.booking_id, round(r.end * 1000))
                seen[key] += 1
                scheduled = r.end - (warning_of[car] if kind == WARNING else 0)
                late.append(r.arrival - scheduled)
                stored.append(r.created - scheduled)
                early += r.arrival < scheduled
                if key not in expected:
                    p = periods.get(key[1:])
                    sent = p.cancel_sent if p is not None else None
                    if kind == WARNING and sent is not None and sent < scheduled:
                        raced += 1  # the cancel was sent before the warning time
                    else:
                        unexpected += 1
                        strays.append(_example(car, r.booking_id, r.end, r.arrival))
        want = sum(1 for k in expected if k[0] == kind)
        out[name] = {
            "expected": want,
            "received": sum(seen.values()),
            "missing": sum(1 for k in expected if k[0] == kind and k not in seen),
            "early": early,
            "duplicates": sum(n - 1 for n in seen.values() if n > 1),
            "unexpected": unexpected,
            "unexpected_examples": strays[:EXAMPLES],
            "missing_examples": [
                _example(periods[k[1:]].car, k[1], periods[k[1:]].end)
                for k in sorted(expected)
                if k[0] == kind and k not in seen
            ][:EXAMPLES],
            "after_cancel_race": raced,
            "lateness_seconds": spread(late),
            "stored_lateness_seconds": spread(stored),
        }
    out["socket_reconnects"] = reconnects
    return out


def occupancy_figures(sim: Simulation) -> dict[str, Any]:
    """Per boundary and lot: the data's occupancy against Parkmate's."""
    lots = sim.plan.data.lots
    rows = []
    mismatches = 0
    for b in sim.boundaries:
        off = [i for i in range(len(lots)) if b.settled[i] != b.expected[i]]
        mismatches += len(off)
        rows.append(
            {
                "time": hhmm(b.day_seconds),
                "data": b.expected,
                "parkmate_at_boundary": b.at_boundary,
                "parkmate_settled": b.settled,
                "settle_seconds": round(b.settle_seconds, 3),
                "mismatched_lots": [lots[i].code for i in off],
            }
        )
    return {
        "lots": [{"code": x.code, "name": x.name, "capacity": x.capacity} for x in lots],
        "boundaries": rows,
        "mismatches": mismatches,
        "equal_at_boundary": sum(
            1 for b in sim.boundaries for i in range(len(lots)) if b.at_boundary[i] == b.expected[i]
        ),
        "checks": len(sim.boundaries) * len(lots),
    }


def expiry_figures(sim: Simulation, owner_expired: Counter) -> dict[str, Any]:
    """Each booking that reached its end expired exactly once (owners' inboxes). Only this
    run's bookings count: a reused lot's owner also holds an earlier run's expiries."""
    reached = sim.reached_end()
    made = {p.booking_id for p in sim.periods}
    return {
        "bookings_that_reached_their_end": len(reached),
        "expired_once": sum(1 for b in reached if owner_expired.get(b) == 1),
        "never_expired": sum(1 for b in reached if owner_expired.get(b, 0) == 0),
        "expired_more_than_once": sum(1 for b in reached if owner_expired.get(b, 0) > 1),
        "expired_without_reaching_end": sum(
            1 for b in owner_expired if b in made and b not in reached
        ),
    }


def build(
    sim: Simulation,
    owner_expired: Counter,
    final_counts: list[int],
    bounds: Bounds | None = None,
    cpu: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Every figure of the report as JSON-able data, with `bounds` (None: the defaults);
    `cpu` is services/replay/cpu.py's figures (None: not measured)."""
    bounds = bounds or Bounds()
    s = sim.stats
    end = sim.finished_at or sim.interrupted_at
    duration = end - sim.origin if end and sim.origin else None
    return {
        "day": sim.plan.data.day.isoformat(),
        "window": [hhmm(sim.plan.data.boundaries[0]), hhmm(sim.plan.last)],
        "speed": sim.o.speed,
        "seed": sim.o.seed,
        "lots": len(sim.lots),
        "booking_seconds": sim.lots[0].booking_seconds if sim.lots else None,
        "warning_seconds": sim.lots[0].warning_seconds if sim.lots else None,
        "cars": len(sim.plan.cars),
        "interrupted_at_day_time": hhmm(sim.day(sim.interrupted_at))
        if sim.interrupted_at
        else None,
        "setup_seconds": round(sim.setup_seconds, 1),
        "replay_seconds": round(duration, 1) if duration else None,
        "cleaning": vars(sim.plan.data.log),
        "bookings": {
            "made": s.made,
            "refused": dict(s.refused),
            "renewed": s.renewed,
            "rebooked_after_expiry": s.rebooked,
            "renewals_refused": dict(s.renew_refused),
            "cancelled": s.cancelled,
            "expired": s.let_expire + s.rebooked + sum(s.renew_refused.values()),
            "retried_requests": s.retries,
            "adopted_after_retry": s.adopted,
            "errors": dict(s.errors),
            "overload_answers": {
                kind: {str(status): n for status, n in sorted(counts.items())}
                for kind, counts in sorted(s.overload.items())
            },
        },
        "latency_seconds": {
            "create": spread(s.create_latency),
            "renew": spread(s.renew_latency),
            "cancel": spread(s.cancel_latency),
        },
        "notifications": notification_figures(sim),
        "expiry_check": expiry_figures(sim, owner_expired),
        "occupancy": occupancy_figures(sim),
        "active_after_drain": sum(final_counts),
        "cpu": cpu or {"measured": False, "why_not": "not measured"},
        "bounds": {
            "max_lateness_p99_seconds": bounds.max_lateness,
            "min_occupancy_share": bounds.min_occupancy,
        },
    }


def occupancy_share(report: dict[str, Any]) -> float | None:
    """The share (0 to 1) of lot-boundary checks equal to the data once settled, or
    None when there was no check."""
    o = report["occupancy"]
    return (o["checks"] - o["mismatches"]) / o["checks"] if o["checks"] else None


def failures(report: dict[str, Any]) -> list[str]:
    """What the report says went wrong (empty: the replay held up)."""
    out = []
    n = report["notifications"]
    for name in ("warnings", "expiries"):
        for what in ("missing", "early", "duplicates", "unexpected"):
            if n[name][what]:
                out.append(f"{n[name][what]} {name} {what}")
    e = report["expiry_check"]
    whole = not report["interrupted_at_day_time"]  # an interrupted run skipped these checks
    for what in ("never_expired", "expired_more_than_once", "expired_without_reaching_end"):
        if e[what] and whole:
            out.append(f"{e[what]} bookings {what.replace('_', ' ')}")
    bounds = report["bounds"]
    for name in ("warnings", "expiries"):
        p99 = n[name]["lateness_seconds"]["p99"]
        if p99 is not None and p99 > bounds["max_lateness_p99_seconds"]:
            out.append(
                f"{name} lateness p99 {p99:.3f} s over the bound of "
                f"{bounds['max_lateness_p99_seconds']:g} s"
            )
    share = occupancy_share(report)
    if share is not None and share < bounds["min_occupancy_share"]:
        o = report["occupancy"]
        out.append(
            f"occupancy equal to the data at {o['checks'] - o['mismatches']} of {o['checks']} "
            f"lot-boundary checks ({share:.1%}), under the bound of "
            f"{bounds['min_occupancy_share']:.1%}"
        )
    if report["active_after_drain"] and whole:
        out.append(f"{report['active_after_drain']} bookings still active after the drain")
    if report["bookings"]["errors"]:
        out.append(f"request errors: {report['bookings']['errors']}")
    return out


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def render_cpu(cpu: dict[str, Any]) -> list[str]:
    """The CPU section as lines: a row per process, the total and the replay's share."""
    if "processes" not in cpu:
        return [f"CPU: not measured ({cpu.get('why_not') or 'no figures'})"]
    lines = [
        f"CPU over the day part ({cpu['wall_seconds']:.1f} s from the first car to the last "
        f"one done; {cpu['renewals']} renewals handled):",
        "  process        CPU s   ms/renewal",
    ]
    for row in cpu["processes"]:
        if row["cpu_seconds"] is not None:
            lines.append(
                f"  {row['name']:<12} {row['cpu_seconds']:7.2f}   {_s(row['ms_per_renewal']):>10}"
            )
        elif cpu["measured"]:  # else one line below says why none was
            lines.append(f"  {row['name']:<12}  not measured: {row['why_not']}")
    if cpu["total_cpu_seconds"] is None:
        lines.append(f"  the services, nats-server and PostgreSQL: not measured ({cpu['why_not']})")
    else:
        part = "" if cpu["complete"] else " (of the processes measured)"
        share = cpu["replay_share"]
        lines.append(
            f"  {'total':<12} {cpu['total_cpu_seconds']:7.2f}   "
            f"{_s(cpu['total_ms_per_renewal']):>10}{part}"
        )
        lines.append(
            "  the replay's share of the total: "
            + ("-" if share is None else f"{share:.1%}")
            + part
        )
    return lines


def render(report: dict[str, Any]) -> str:
    """The report as text for the terminal and report.md."""
    b, n, o = report["bookings"], report["notifications"], report["occupancy"]
    lines = [
        f"Replay of {report['day']} {report['window'][0]}-{report['window'][1]}, "
        f"{report['lots']} car parks, {report['cars']} cars, speed {report['speed']:g} "
        f"(bookings {report['booking_seconds']} s, warning {report['warning_seconds']} s "
        f"before the end), seed {report['seed']}",
        f"set-up {report['setup_seconds']} s; day replayed and drained in "
        f"{report['replay_seconds']} s",
        "",
        f"bookings made {b['made']}, renewed {b['renewed']}, cancelled {b['cancelled']}, "
        f"expired {b['expired']} (of which rebooked after expiry {b['rebooked_after_expiry']})",
        f"refused: {b['refused'] or 'none'}; renewals refused: {b['renewals_refused'] or 'none'}",
        f"retried requests {b['retried_requests']}, errors {b['errors'] or 'none'}",
        "overload answers (429/503, each retried after its Retry-After): "
        + (
            "; ".join(
                f"{kind} " + ", ".join(f"{n} x {status}" for status, n in counts.items())
                for kind, counts in b["overload_answers"].items()
            )
            or "none"
        ),
    ]
    for name, lat in report["latency_seconds"].items():
        lines.append(
            f"{name} latency: p50 {_s(lat['p50'])} s, p99 {_s(lat['p99'])} s, "
            f"max {_s(lat['max'])} s ({lat['count']} requests)"
        )
    lines += ["", f"sampled drivers on sockets: {n['sampled_drivers']}"]
    for name in ("warnings", "expiries"):
        x = n[name]
        lat, st = x["lateness_seconds"], x["stored_lateness_seconds"]
        lines.append(
            f"{name}: expected {x['expected']}, received {x['received']}, missing "
            f"{x['missing']}, early {x['early']}, duplicates {x['duplicates']}, unexpected "
            f"{x['unexpected']}"
        )
        lines.append(
            f"  lateness on the socket: p50 {_s(lat['p50'])} s, p95 {_s(lat['p95'])} s, "
            f"p99 {_s(lat['p99'])} s, max {_s(lat['max'])} s (stored: p50 {_s(st['p50'])} s, "
            f"p99 {_s(st['p99'])} s)"
        )
    e = report["expiry_check"]
    lines += [
        f"socket reconnects: {n['socket_reconnects']}",
        "",
        f"bookings that reached their end: {e['bookings_that_reached_their_end']}, expired "
        f"exactly once: {e['expired_once']} (owners' inboxes)",
        f"occupancy: {o['checks'] - o['mismatches']} of {o['checks']} lot-boundary checks equal "
        f"to the data once settled ({o['equal_at_boundary']} already at the boundary)",
        "",
        "time   data    parkmate  settle(s)",
    ]
    for row in o["boundaries"]:
        lines.append(
            f"{row['time']}  {sum(row['data']):6d}  {sum(row['parkmate_settled']):6d}    "
            f"{row['settle_seconds']:.2f}" + ("" if not row["mismatched_lots"] else "  MISMATCH")
        )
    lines += ["", *render_cpu(report["cpu"])]
    bad = failures(report)
    if report["interrupted_at_day_time"]:
        lines += [
            "",
            f"INTERRUPTED at day time {report['interrupted_at_day_time']}: counts are up to "
            "then; 'missing' means due before the interruption but not yet received, and the "
            "expiry check and final counts were skipped.",
        ]
    bounds = report["bounds"]
    share = occupancy_share(report)
    lines += [
        "",
        "RESULT: " + ("OK" if not bad else "FAILED: " + "; ".join(bad)),
        f"bounds: warning and expiry lateness p99 at most "
        f"{bounds['max_lateness_p99_seconds']:g} s (warnings "
        f"{_s(n['warnings']['lateness_seconds']['p99'])} s, expiries "
        f"{_s(n['expiries']['lateness_seconds']['p99'])} s); occupancy equal to the data at "
        f"least at {bounds['min_occupancy_share']:.1%} of the checks ("
        + ("-" if share is None else f"{share:.1%}")
        + ")",
    ]
    return "\n".join(lines)


def plot(report: dict[str, Any], path: Path) -> None:
    """Occupancy over the day, data against Parkmate, for the city and the ten largest
    car parks, as a PNG at `path`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    o = report["occupancy"]
    times = [row["time"] for row in o["boundaries"]]
    x = list(range(len(times)))
    lots = o["lots"]
    biggest = sorted(range(len(lots)), key=lambda i: -lots[i]["capacity"])[:10]
    everything = f"All {len(lots)} replayed car parks" if len(lots) > 1 else lots[0]["name"]
    panels = [(everything, None), *[(lots[i]["name"], i) for i in biggest]]
    rows = math.ceil(len(panels) / 4)
    fig, axes = plt.subplots(rows, 4, figsize=(16, 3.4 * rows + 0.6), squeeze=False)
    checks = o["boundaries"]
    for ax, (title, i) in zip(axes.flat, panels, strict=False):
        if i is None:
            data = [sum(r["data"]) for r in checks]
            mine = [sum(r["parkmate_settled"]) for r in checks]
            cap = sum(x["capacity"] for x in lots)
        else:
            data = [r["data"][i] for r in checks]
            mine = [r["parkmate_settled"][i] for r in checks]
            cap = lots[i]["capacity"]
        ax.plot(x, data, "-", color="#1f77b4", linewidth=2.5, label="data (UCI)")
        ax.plot(x, mine, "o", color="#d62728", markersize=3.5, label="Parkmate active bookings")
        ax.axhline(cap, color="grey", linestyle=":", linewidth=1)
        ax.set_title(f"{title} (capacity {cap})", fontsize=9)
        ax.set_ylim(0, cap * 1.05)
        ax.tick_params(labelsize=7)
    for ax in axes.flat[len(panels) :]:
        ax.axis("off")
    step = max(1, len(x) // 6)
    for ax in axes.flat:
        ax.set_xticks(x[::step], times[::step])
    axes.flat[0].legend(fontsize=7, loc="lower right")
    n = report["notifications"]
    fig.suptitle(
        f"Birmingham car parks on {report['day']}: occupancy in the data against active "
        f"bookings in Parkmate (speed {report['speed']:g}; warnings p99 "
        f"{_s(n['warnings']['lateness_seconds']['p99'])} s, expiries p99 "
        f"{_s(n['expiries']['lateness_seconds']['p99'])} s late; "
        f"missing {n['warnings']['missing'] + n['expiries']['missing']}, early "
        f"{n['warnings']['early'] + n['expiries']['early']})",
        fontsize=11,
    )
    fig.text(
        0.5,
        0.01,
        "Data: Birmingham City Council / NCP car parks via the UCI Machine Learning "
        "Repository (Stolfi, Alba & Yao 2017), Open Government Licence.",
        ha="center",
        fontsize=8,
    )
    fig.tight_layout(rect=(0, 0.04, 1, 0.93))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(report: dict[str, Any], directory: Path) -> list[Path]:
    """report.json, report.txt and occupancy.png in `directory` (created)."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = [directory / "report.json", directory / "report.txt", directory / "occupancy.png"]
    paths[0].write_text(json.dumps(report, indent=1))
    paths[1].write_text(render(report) + "\n")
    plot(report, paths[2])
    return paths
