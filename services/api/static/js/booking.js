// One booking: a large countdown from the server's remaining_seconds, the "expiring
// soon" state inside the lot's warning window, Renew and Cancel, the expired state with
// Renew offered while the lot's grace period lasts and the slot is still free, a car
// wash. The lot's owner, staff and admins see the same page with their own actions.
//
// The server ends the booking, not this page: at zero the page only waits for the
// server to say "expired" (and toasts come from the server's notifications).
import { useEffect, useRef, useState } from "preact/hooks";
import { get, post, serverNow } from "./api.js";
import { Countdown, hms } from "./clock.js";
import { useApp, useLive, useResync, useTopic } from "./context.js";
import { StaffActions } from "./dashboard.js";
import { applySlotUpdate } from "./lots.js";
import { dateTime, money, time } from "./format.js";
import { html } from "./html.js";
import { navigate } from "./router.js";
import { ActionButton, Badge, Loading, Problem, Trouble } from "./ui.js";

const TICK_MS = 250;
const RESYNC_MS = 30000; // re-read the server's clock now and then, even with no event
const ZERO_POLL_MS = 1000; // at zero, ask until the server has ended it

/** What the page shows: active, expiring, ending (zero, server not done), or the status. */
export function bookingState(booking, left, warningSeconds) {
  if (booking.status !== "active") return booking.status;
  if (left <= 0) return "ending";
  if (left <= warningSeconds) return "expiring";
  return "active";
}

const HEADLINES = {
  active: "Your slot is booked",
  expiring: "Expiring soon: renew to keep the slot",
  ending: "Time is up; the server is ending the booking",
  expired: "This booking has expired",
  cancelled: "This booking was cancelled",
  declined: "This booking was declined by the lot",
};

function renewable(booking, lot) {
  if (!lot) return false;
  if (lot.max_renewals !== null && booking.renewals >= lot.max_renewals) return false;
  if (booking.status === "active") return true;
  if (booking.status !== "expired") return false;
  // After expiry: within the lot's grace period (by the server's clock, from its Date
  // header) and only while nobody else took the slot.
  const slot = lot.slots && lot.slots.find((s) => s.id === booking.slot_id);
  const now = serverNow();
  const graceEnd = Date.parse(booking.end_time) + lot.renew_grace_seconds * 1000;
  return Boolean(slot && slot.status === "free" && (now === null || now < graceEnd));
}

function DriverActions({ booking, lot, changed }) {
  const [confirming, setConfirming] = useState(false);
  const renew = async () => {
    const next = await post(`/bookings/${booking.id}/renew`);
    // An expired booking renews as a new booking (renewed_from): go to it.
    if (next.id !== booking.id) navigate(`#/bookings/${next.id}`);
    else changed(next);
  };
  const cancel = async () => changed(await post(`/bookings/${booking.id}/cancel`));
  const wash = async () => {
    await post(`/bookings/${booking.id}/carwash`);
    changed(await get(`/bookings/${booking.id}`));
  };
  const active = booking.status === "active";
  return html`<div class="actions">
    ${renewable(booking, lot) &&
    html`<${ActionButton} kind="primary" action=${renew}>
      ${active ? "Renew" : "Renew (book again)"}
    </${ActionButton}>`}
    ${active && lot && lot.carwash_price && !booking.carwash &&
    html`<${ActionButton} action=${wash}>Order a car wash (${money(lot.carwash_price)})</${ActionButton}>`}
    ${active && !confirming &&
    html`<button class="btn btn-danger-outline" onClick=${() => setConfirming(true)}>Cancel booking</button>`}
    ${active && confirming &&
    html`<div class="confirm" role="group" aria-label="Confirm cancelling">
      <span>Cancel and free the slot?</span>
      <${ActionButton} kind="danger" action=${cancel}>Yes, cancel</${ActionButton}>
      <button class="btn btn-secondary" onClick=${() => setConfirming(false)}>Keep it</button>
    </div>`}
  </div>`;
}

export function BookingPage({ id }) {
  const { user } = useApp();
  const [booking, setBooking] = useState(null);
  const [lot, setLot] = useState(null);
  const [error, setError] = useState(null);
  const [, setTick] = useState(0);
  const countdown = useRef(new Countdown(0));
  const lastSync = useRef(0);

  // Every booking answer carries remaining_seconds: each one re-anchors the countdown.
  const show = (b) => {
    countdown.current.sync(b.remaining_seconds);
    lastSync.current = performance.now();
    setBooking(b);
  };
  const load = async () => {
    try {
      const b = await get(`/bookings/${id}`);
      show(b);
      setLot(await get(`/lots/${b.lot_id}`));
      setError(null);
    } catch (e) {
      setError(e);
    }
  };
  useResync(load, [id]);
  useTopic(booking ? `lot.${booking.lot_id}` : null);
  useLive("slot_update", (frame) => setLot((old) => applySlotUpdate(old, frame)));
  useLive("notification", (n) => {
    const data = n.data || {};
    if (data.renewed_from === id && booking && booking.user_id === user.id) {
      navigate(`#/bookings/${data.booking_id}`); // renewed on another device
    } else if (data.booking_id === id) {
      load(); // the server changed this booking (warned, renewed, expired, verified...)
    }
  });

  useEffect(() => {
    const timer = setInterval(() => {
      setTick((n) => n + 1);
      if (!booking || booking.status !== "active") return;
      const since = performance.now() - lastSync.current;
      const atZero = countdown.current.remaining() <= 0;
      if (since > RESYNC_MS || (atZero && since > ZERO_POLL_MS)) {
        lastSync.current = performance.now();
        load();
      }
    }, TICK_MS);
    return () => clearInterval(timer);
  }, [booking && booking.id, booking && booking.status]);

  if (!booking) {
    return error ? html`<${Problem} error=${error} retry=${load} />` : html`<${Loading} what="Loading the booking" />`;
  }

  const left = booking.status === "active" ? countdown.current.remaining() : 0;
  const state = bookingState(booking, left, lot ? lot.warning_seconds : 0);
  const period = (Date.parse(booking.end_time) - Date.parse(booking.start_time)) / 1000;
  const fraction = period > 0 ? Math.min(1, left / period) : 0;
  const isDriver = booking.user_id === user.id;

  return html`<section class="page booking" data-state=${state}>
    <p><a href=${isDriver ? "#/bookings" : "#/dashboard"}>← ${isDriver ? "Your bookings" : "Dashboard"}</a></p>
    <${Trouble} error=${error} retry=${load} stale=${true} />
    <div class=${`booking-panel state-${state}`}>
      <p class="booking-where">
        Slot <strong>${booking.slot_label}</strong>${lot && html` · ${lot.name}`}
      </p>
      <div class="countdown" role="timer" aria-label="Time left">${hms(left)}</div>
      <div class="progress" aria-hidden="true"><span style=${`width:${(fraction * 100).toFixed(1)}%`}></span></div>
      <p class="booking-state" aria-live="polite">${HEADLINES[state]}</p>
      <p class="small">Until ${time(booking.end_time)}${booking.renewals ? ` · renewed ${booking.renewals}×` : ""}</p>
    </div>
    ${isDriver && html`<${DriverActions} booking=${booking} lot=${lot} changed=${show} />`}
    ${!isDriver && lot && html`<${StaffActions} booking=${booking} lot=${lot} changed=${show} />`}
    <dl class="facts card">
      <dt>Status</dt><dd><${Badge} value=${booking.status} /></dd>
      <dt>Started</dt><dd>${dateTime(booking.start_time)}</dd>
      <dt>Ends</dt><dd>${dateTime(booking.end_time)}</dd>
      <dt>Price</dt><dd>${money(booking.price)}</dd>
      <dt>Payment</dt><dd>${booking.payment.method} · <${Badge} value=${booking.payment.status} /></dd>
      ${booking.carwash && html`<dt>Car wash</dt><dd><${Badge} value=${booking.carwash.status} /></dd>`}
      ${lot && html`<dt>Where</dt><dd>${lot.address}</dd>`}
      ${booking.renewed_from && html`<dt>Renewed from</dt><dd><a href=${`#/bookings/${booking.renewed_from}`}>the expired booking</a></dd>`}
    </dl>
  </section>`;
}
