// One lot: its slots live, and the booking form (slot, vehicle, payment, car wash).
import { useState } from "preact/hooks";
import { get, post } from "./api.js";
import { useApp, useLive, useResync, useTopic } from "./context.js";
import { duration, money } from "./format.js";
import { html } from "./html.js";
import { Availability, SlotGrid, applySlotUpdate } from "./lots.js";
import { navigate } from "./router.js";
import { ActionButton, Field, Loading, Trouble, formValues } from "./ui.js";

function Vehicles({ vehicles, chosen, choose, added }) {
  const { toast } = useApp();
  const add = async (event) => {
    event.preventDefault();
    const form = event.target;
    try {
      const vehicle = await post("/vehicles", formValues(form));
      form.reset();
      added(vehicle);
    } catch (error) {
      toast({ level: "error", title: "The vehicle was not added", body: error.message });
    }
  };
  return html`<fieldset class="stack">
    <legend>Vehicle</legend>
    <${Field} label="Park with">
      <select name="vehicle_id" value=${chosen || ""} onChange=${(e) => choose(e.target.value || null)}>
        <option value="">No vehicle</option>
        ${vehicles.map(
          (v) => html`<option value=${v.id}>${v.plate}${v.label ? ` (${v.label})` : ""}</option>`,
        )}
      </select>
    </${Field}>
    <form class="row wrap end" onSubmit=${add}>
      <${Field} label="Plate"><input name="plate" required maxlength="16" /></${Field}>
      <${Field} label="Label (optional)"><input name="label" maxlength="40" /></${Field}>
      <button class="btn btn-secondary" type="submit">Add vehicle</button>
    </form>
  </fieldset>`;
}

export function LotPage({ id }) {
  const { user } = useApp();
  const [lot, setLot] = useState(null);
  const [vehicles, setVehicles] = useState([]);
  const [error, setError] = useState(null);
  const [slotId, setSlotId] = useState(null);
  const [vehicleId, setVehicleId] = useState(null);
  const [payment, setPayment] = useState("cash");
  const [carwash, setCarwash] = useState(false);
  const isDriver = user.roles.includes("driver");

  useTopic(`lot.${id}`);
  const load = async () => {
    try {
      const [l, v] = await Promise.all([
        get(`/lots/${id}`),
        isDriver ? get("/vehicles") : { items: [] },
      ]);
      setLot(l);
      setVehicles(v.items);
      setError(null);
    } catch (e) {
      setError(e);
    }
  };
  useResync(load, [id]);
  useLive("slot_update", (frame) => setLot((old) => applySlotUpdate(old, frame)));

  if (!lot) return error ? html`<${Trouble} error=${error} retry=${load} />` : html`<${Loading} />`;
  const picked = lot.slots.find((s) => s.id === slotId && s.status === "free");

  const book = async () => {
    const booking = await post("/bookings", {
      slot_id: picked.id,
      vehicle_id: vehicleId,
      payment_method: payment,
      carwash,
    });
    // No toast of our own: the server's "Booking confirmed" notification follows.
    navigate(`#/bookings/${booking.id}`);
  };

  return html`<section class="page">
    <p><a href="#/lots">← All lots</a></p>
    <${Trouble} error=${error} retry=${load} stale=${true} />
    <h1>${lot.name}</h1>
    <p class="muted">${lot.address}</p>
    <${Availability} free=${lot.free_slots} total=${lot.total_slots} />
    <p class="small">
      ${money(lot.price_per_hour)} per hour · bookings of ${duration(lot.booking_seconds)}, a
      warning ${duration(lot.warning_seconds)} before the end
    </p>
    <${SlotGrid} slots=${lot.slots} picked=${slotId} pick=${isDriver ? setSlotId : null} />
    ${isDriver &&
    html`<div class="card stack booking-form">
      <h2>Book</h2>
      <${Vehicles} vehicles=${vehicles} chosen=${vehicleId} choose=${setVehicleId}
        added=${(v) => {
          setVehicles((old) => [...old, v]);
          setVehicleId(v.id);
        }} />
      <fieldset class="row wrap">
        <legend>Payment</legend>
        ${["cash", "online"].map(
          (method) => html`<label class="check">
            <input type="radio" name="payment" value=${method} checked=${payment === method}
              onChange=${() => setPayment(method)} />
            ${method === "cash" ? "Cash at the lot" : "Online"}
          </label>`,
        )}
      </fieldset>
      ${lot.carwash_price &&
      html`<label class="check">
        <input type="checkbox" checked=${carwash} onChange=${(e) => setCarwash(e.target.checked)} />
        Add a car wash (${money(lot.carwash_price)})
      </label>`}
      <div>
        <${ActionButton} kind="primary" action=${book} disabled=${!picked}>
          ${picked ? `Book slot ${picked.label}` : "Pick a free slot"}
        </${ActionButton}>
      </div>
    </div>`}
  </section>`;
}
