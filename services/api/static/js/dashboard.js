// The dashboard of lot owners, their employees and admins: each lot's slots live, its
// current bookings, and what staff do to them (verify cash, decline with a reason, run
// car washes). Owners can open a new lot here.
import { useState } from "preact/hooks";
import { get, getAll, post } from "./api.js";
import { useApp, useDebounced, useLive, useResync, useTopic } from "./context.js";
import { duration, money, shortId, time } from "./format.js";
import { html } from "./html.js";
import { SlotGrid, applySlotUpdate } from "./lots.js";
import { ActionButton, Badge, Field, Loading, Trouble, formValues } from "./ui.js";

/** Actions of the lot's owner, staff and admins on one booking. */
export function StaffActions({ booking, lot, changed }) {
  const { user } = useApp();
  const [declining, setDeclining] = useState(false);
  const [reason, setReason] = useState("");
  const mayDecline = user.roles.includes("admin") || lot.owner_id === user.id;
  const act = (path, body) => async () => changed(await post(path, body));
  const wash = booking.carwash;
  const active = booking.status === "active";
  // A wash step answers with the order, not the booking: read the booking again (its
  // remaining_seconds included, which the booking page's countdown re-anchors on).
  const washStep = (step) => async () => {
    await post(`/carwash/${wash.id}/${step}`);
    changed(await get(`/bookings/${booking.id}`));
  };
  const decline = async () => {
    changed(await post(`/bookings/${booking.id}/decline`, { reason }));
    setDeclining(false);
  };
  return html`<div class="actions">
    ${booking.payment.method === "cash" && booking.payment.status === "pending" &&
    html`<${ActionButton} kind="primary" action=${act(`/bookings/${booking.id}/payment/verify`)}
      label=${`Verify cash payment for slot ${booking.slot_label}`}>Verify cash</${ActionButton}>`}
    ${wash && wash.status === "requested" &&
    html`<${ActionButton} action=${washStep("start")}
      label=${`Start car wash at slot ${booking.slot_label}`}>Start wash</${ActionButton}>`}
    ${wash && wash.status === "in_progress" &&
    html`<${ActionButton} action=${washStep("complete")}
      label=${`Complete car wash at slot ${booking.slot_label}`}>Complete wash</${ActionButton}>`}
    ${active && mayDecline && !declining &&
    html`<button class="btn btn-danger-outline" onClick=${() => setDeclining(true)}
      aria-label=${`Decline the booking of slot ${booking.slot_label}`}>Decline</button>`}
    ${declining &&
    html`<form class="row wrap end" onSubmit=${(e) => e.preventDefault()}>
      <${Field} label="Reason (told to the driver)">
        <input value=${reason} onInput=${(e) => setReason(e.target.value)} required maxlength="500" />
      </${Field}>
      <${ActionButton} kind="danger" action=${decline} disabled=${!reason.trim()}>Decline booking</${ActionButton}>
      <button type="button" class="btn btn-secondary" onClick=${() => setDeclining(false)}>Keep it</button>
    </form>`}
  </div>`;
}

function LotPanel({ lot, bookings, changed }) {
  useTopic(`lot.${lot.id}`);
  return html`<section class="card lot-panel" data-lot=${lot.id} aria-labelledby=${`lot-${lot.id}`}>
    <div class="page-head">
      <h2 id=${`lot-${lot.id}`}><a href=${`#/lots/${lot.id}`}>${lot.name}</a></h2>
      <span class="muted"><strong>${lot.free_slots}</strong> of ${lot.total_slots} free</span>
    </div>
    <p class="muted small">
      ${lot.address} · ${money(lot.price_per_hour)}/h · bookings of ${duration(lot.booking_seconds)}
    </p>
    <${SlotGrid} slots=${lot.slots || []} label=${`Slots of ${lot.name}`} />
    <h3>Current bookings</h3>
    ${bookings.length === 0 && html`<p class="muted small">None right now.</p>`}
    <ul class="list">
      ${bookings.map(
        (b) => html`<li key=${b.id} class="list-row booking-row" data-slot=${b.slot_label}>
          <a href=${`#/bookings/${b.id}`}>Slot <strong>${b.slot_label}</strong></a>
          <span class="muted small">driver …${shortId(b.user_id)} · until ${time(b.end_time)}</span>
          <span class="small">${b.payment.method} <${Badge} value=${b.payment.status} /></span>
          ${b.carwash && html`<span class="small">wash <${Badge} value=${b.carwash.status} /></span>`}
          <${StaffActions} booking=${b} lot=${lot} changed=${changed} />
        </li>`,
      )}
    </ul>
  </section>`;
}

function NewLot({ created }) {
  const { toast } = useApp();
  const submit = async (event) => {
    event.preventDefault();
    const form = event.target;
    const v = formValues(form);
    const currency = "EUR";
    try {
      const lot = await post("/lots", {
        name: v.name,
        address: v.address,
        slot_count: Number(v.slot_count),
        booking_seconds: Math.round(Number(v.booking_minutes) * 60),
        warning_seconds: Math.round(Number(v.warning_minutes) * 60),
        price_per_hour: { amount: v.price_per_hour, currency },
        carwash_price: v.carwash_price ? { amount: v.carwash_price, currency } : null,
      });
      form.reset();
      form.closest("details").open = false;
      toast({ level: "success", title: `${lot.name} is open`, type: "local" });
      created();
    } catch (error) {
      toast({ level: "error", title: "The lot was not created", body: error.message });
    }
  };
  return html`<details class="card">
    <summary>Open a new lot</summary>
    <form class="grid-form" onSubmit=${submit}>
      <${Field} label="Name"><input name="name" required maxlength="200" /></${Field}>
      <${Field} label="Address"><input name="address" required maxlength="300" /></${Field}>
      <${Field} label="Number of slots"><input name="slot_count" type="number" min="1" max="500" defaultValue="10" required /></${Field}>
      <${Field} label="Booking length (minutes)"><input name="booking_minutes" type="number" min="0.1" max="43200" step="any" defaultValue="60" required /></${Field}>
      <${Field} label="Warning before the end (minutes)"><input name="warning_minutes" type="number" min="0" max="43200" step="any" defaultValue="5" required /></${Field}>
      <${Field} label="Price per hour (EUR)"><input name="price_per_hour" inputmode="decimal" pattern="(0|[1-9]\\d{0,6})(\\.\\d{1,2})?" defaultValue="2.40" required /></${Field}>
      <${Field} label="Car wash price (EUR, empty for none)"><input name="carwash_price" inputmode="decimal" pattern="(0|[1-9]\\d{0,6})(\\.\\d{1,2})?" /></${Field}>
      <button class="btn btn-primary" type="submit">Open lot</button>
    </form>
  </details>`;
}

export function Dashboard() {
  const { user } = useApp();
  const [lots, setLots] = useState(null);
  const [bookings, setBookings] = useState([]);
  const [error, setError] = useState(null);
  const isAdmin = user.roles.includes("admin");

  const load = async () => {
    try {
      // Admins oversee every lot; owners and employees the lots they own or work at.
      const mine = await getAll(isAdmin ? "/lots" : "/lots?mine=true", 50);
      const full = await Promise.all(mine.map((l) => get(`/lots/${l.id}/slots`)));
      const active = await getAll("/bookings?status=active");
      setLots(mine.map((l, i) => ({ ...l, slots: full[i] || [] })));
      setBookings(active);
      setError(null);
    } catch (e) {
      setError(e);
    }
  };
  useResync(load, []);
  const reload = useDebounced(load, 400);
  useLive("slot_update", (frame) => {
    setLots((old) => old && old.map((l) => applySlotUpdate(l, frame)));
    reload(); // bookings behind the slot changed too
  });
  useLive("notification", (n) => n.data && n.data.lot_id && reload());

  const changed = (b) =>
    setBookings((old) =>
      b.status === "active" ? old.map((o) => (o.id === b.id ? b : o)) : old.filter((o) => o.id !== b.id),
    );

  return html`<section class="page">
    <h1>Dashboard</h1>
    ${user.roles.includes("owner") && html`<${NewLot} created=${load} />`}
    <${Trouble} error=${error} retry=${load} stale=${Boolean(lots)} />
    ${!lots && !error && html`<${Loading} />`}
    ${lots && lots.length === 0 &&
    html`<p class="muted">
      ${user.roles.includes("owner") ? "You have no lots yet: open one above." : "You are not assigned to a lot yet."}
    </p>`}
    ${(lots || []).map(
      (lot) => html`<${LotPanel} key=${lot.id} lot=${lot} changed=${changed}
        bookings=${bookings.filter((b) => b.lot_id === lot.id)} />`,
    )}
  </section>`;
}
