// The lots, with live free/total counts, and the slot grid the lot page and the
// dashboard share.
import { useState } from "preact/hooks";
import { get, getAll } from "./api.js";
import { useApp, useDebounced, useLive, useResync, useTopic } from "./context.js";
import { duration, money, time } from "./format.js";
import { html } from "./html.js";
import { Loading, Trouble } from "./ui.js";

/** Subscribes to one lot's topic for as long as it is rendered. */
function Watch({ lotId }) {
  useTopic(`lot.${lotId}`);
  return null;
}

export function Availability({ free, total }) {
  const pct = total ? Math.round((100 * free) / total) : 0;
  return html`<div class="availability">
    <span class="availability-text"><strong>${free}</strong> of ${total} free</span>
    <span class="meter" aria-hidden="true"><span style=${`width:${pct}%`}></span></span>
  </div>`;
}

export function LotsPage() {
  const { user } = useApp();
  const [lots, setLots] = useState(null);
  const [active, setActive] = useState([]);
  const [error, setError] = useState(null);
  const isDriver = user.roles.includes("driver");

  const load = async () => {
    try {
      const [all, mine] = await Promise.all([
        getAll("/lots"),
        isDriver ? get("/bookings?status=active&limit=20") : { items: [] },
      ]);
      setLots(all);
      setActive(mine.items.filter((b) => b.user_id === user.id));
      setError(null);
    } catch (e) {
      setError(e);
    }
  };
  useResync(load, []);
  // A slot_update says which slot changed, not the new counts: fetch them once a burst
  // of updates is over.
  const reload = useDebounced(load, 300);
  useLive("slot_update", (frame) => lots && lots.some((l) => l.id === frame.lot_id) && reload());

  const names = Object.fromEntries((lots || []).map((l) => [l.id, l.name]));
  return html`<section class="page">
    ${active.length > 0 &&
    html`<section class="card">
      <h2>Your active bookings</h2>
      <ul class="plain">
        ${active.map(
          (b) => html`<li key=${b.id}>
            <a href=${`#/bookings/${b.id}`}>Slot ${b.slot_label} · ${names[b.lot_id] || "lot"}</a>
            <span class="muted"> until ${time(b.end_time)}</span>
          </li>`,
        )}
      </ul>
    </section>`}
    <h1>Parking lots</h1>
    <${Trouble} error=${error} retry=${load} stale=${Boolean(lots)} />
    ${!lots && !error && html`<${Loading} />`}
    ${lots && lots.length === 0 && html`<p class="muted">No lots yet.</p>`}
    <ul class="cards">
      ${(lots || []).map(
        (lot) => html`<li class="card lot-card" key=${lot.id} data-lot=${lot.id}>
          <${Watch} lotId=${lot.id} />
          <h2><a href=${`#/lots/${lot.id}`}>${lot.name}</a></h2>
          <p class="muted">${lot.address}</p>
          <${Availability} free=${lot.free_slots} total=${lot.total_slots} />
          <p class="small">
            ${money(lot.price_per_hour)} per hour · bookings of ${duration(lot.booking_seconds)}
            ${lot.carwash_price && html` · car wash ${money(lot.carwash_price)}`}
          </p>
          ${isDriver && html`<a class="btn btn-primary" href=${`#/lots/${lot.id}`}>Choose a slot</a>`}
        </li>`,
      )}
    </ul>
  </section>`;
}

/** A lot's slots as a grid; `pick` makes the free ones selectable (radio buttons). */
export function SlotGrid({ slots, picked, pick, name = "slot", label = "Slots" }) {
  return html`<div class="slots" role=${pick ? "radiogroup" : "list"} aria-label=${label}>
    ${slots.map((slot) => {
      const free = slot.status === "free";
      const body = html`<span class="slot-label">${slot.label}</span>
        <span class="slot-status">${free ? "free" : `until ${time(slot.booked_until)}`}</span>`;
      if (!pick) {
        return html`<div class=${`slot slot-${slot.status}`} role="listitem" data-slot=${slot.label}
          aria-label=${`Slot ${slot.label}, ${slot.status}`}>${body}</div>`;
      }
      return html`<label class=${`slot slot-${slot.status}${picked === slot.id ? " slot-picked" : ""}`}
        data-slot=${slot.label}>
        <input type="radio" name=${name} value=${slot.id} disabled=${!free}
          checked=${picked === slot.id} onChange=${() => pick(slot.id)}
          aria-label=${`Slot ${slot.label}, ${slot.status}`} />
        ${body}
      </label>`;
    })}
  </div>`;
}

/** Apply a slot_update frame to a lot (its slots and free count). */
export function applySlotUpdate(lot, frame) {
  if (!lot || !lot.slots || frame.lot_id !== lot.id) return lot;
  const slots = lot.slots.map((s) =>
    s.id === frame.slot_id ? { ...s, status: frame.status, booked_until: frame.booked_until } : s,
  );
  return { ...lot, slots, free_slots: slots.filter((s) => s.status === "free").length };
}
