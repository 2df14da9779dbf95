// The driver's bookings, newest first.
import { useState } from "preact/hooks";
import { get, getAll } from "./api.js";
import { useResync } from "./context.js";
import { money, time } from "./format.js";
import { html } from "./html.js";
import { ActionButton, Badge, Loading, Trouble } from "./ui.js";

export function BookingsPage() {
  const [bookings, setBookings] = useState(null);
  const [lots, setLots] = useState({});
  const [cursor, setCursor] = useState(null);
  const [error, setError] = useState(null);
  const load = async () => {
    try {
      const [page, all] = await Promise.all([get("/bookings?limit=25"), getAll("/lots")]);
      setBookings(page.items);
      setCursor(page.next_cursor);
      setLots(Object.fromEntries(all.map((l) => [l.id, l])));
      setError(null);
    } catch (e) {
      setError(e);
    }
  };
  useResync(load, []);
  const more = async () => {
    const page = await get(`/bookings?limit=25&cursor=${encodeURIComponent(cursor)}`);
    setBookings((old) => [...old, ...page.items]);
    setCursor(page.next_cursor);
  };
  return html`<section class="page">
    <h1>Bookings</h1>
    <${Trouble} error=${error} retry=${load} stale=${Boolean(bookings)} />
    ${!bookings && !error && html`<${Loading} />`}
    ${bookings && bookings.length === 0 && html`<p class="muted">No bookings yet. <a href="#/lots">Find a slot</a>.</p>`}
    ${bookings &&
    html`<ul class="list">
      ${bookings.map(
        (b) => html`<li key=${b.id} class="list-row">
          <a href=${`#/bookings/${b.id}`}>Slot ${b.slot_label} · ${lots[b.lot_id]?.name || "lot"}</a>
          <${Badge} value=${b.status} />
          <span class="muted small">${time(b.start_time)} – ${time(b.end_time)} · ${money(b.price)}</span>
        </li>`,
      )}
    </ul>`}
    ${cursor && html`<${ActionButton} action=${more}>Load older</${ActionButton}>`}
  </section>`;
}
