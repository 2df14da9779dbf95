// The bell (unread count, kept by live `unread_count` frames) and the notification
// center: the inbox newest first, paged, filtered to unread, marked read one by one or
// all at once. Changes made on another device arrive as `notification_update` frames.
import { useState } from "preact/hooks";
import { get, post } from "./api.js";
import { useApp, useLive, useResync } from "./context.js";
import { dateTime } from "./format.js";
import { html } from "./html.js";
import { ActionButton, Loading, Trouble } from "./ui.js";

const PAGE = 20;

export function Bell({ count }) {
  const label = count === 1 ? "Notifications, 1 unread" : `Notifications, ${count} unread`;
  return html`<a class="bell" href="#/notifications" aria-label=${label} title=${label}>
    <svg aria-hidden="true" viewBox="0 0 24 24" width="22" height="22">
      <path
        fill="currentColor"
        d="M12 22a2.5 2.5 0 0 0 2.45-2h-4.9A2.5 2.5 0 0 0 12 22Zm7-6V11a7 7 0 0 0-5.5-6.84V3.5a1.5 1.5 0 0 0-3 0v.66A7 7 0 0 0 5 11v5l-2 2v1h18v-1l-2-2Z"
      />
    </svg>
    <span class=${count ? "bell-count" : "bell-count bell-count-zero"} id="unread-count">${count}</span>
  </a>`;
}

/** Where a notification leads, from the ids in its `data`. */
export function notificationHref(item) {
  const data = item.data || {};
  if (data.booking_id) return `#/bookings/${data.booking_id}`;
  if (data.lot_id) return `#/lots/${data.lot_id}`;
  return null;
}

function Item({ item, markRead }) {
  const href = notificationHref(item);
  return html`<li class=${`inbox-item level-${item.level}${item.read_at ? " is-read" : ""}`}>
    <div class="inbox-main">
      <div class="inbox-head">
        <strong>${item.title}</strong>
        ${!item.read_at && html`<span class="dot" aria-label="unread" title="unread"></span>`}
      </div>
      <p>${item.body}</p>
      <p class="muted small">
        <time datetime=${item.created_at}>${dateTime(item.created_at)}</time> · ${item.type}
        ${item.truncated &&
        html` · <span class="shortened" title="Stored too long to show in full: cut to the limits">shortened</span>`}
        ${href && html` · <a href=${href}>Open</a>`}
      </p>
    </div>
    ${!item.read_at &&
    html`<${ActionButton} action=${() => markRead(item)} label=${`Mark “${item.title}” read`}>
      Mark read
    </${ActionButton}>`}
  </li>`;
}

export function NotificationCenter() {
  const { toast } = useApp();
  const [unreadOnly, setUnreadOnly] = useState(false);
  const [items, setItems] = useState(null);
  const [cursor, setCursor] = useState(null);
  const [error, setError] = useState(null);

  const query = (after) =>
    `/notifications?limit=${PAGE}` +
    (unreadOnly ? "&unread=true" : "") +
    (after ? `&cursor=${encodeURIComponent(after)}` : "");

  const load = async () => {
    try {
      const page = await get(query(null));
      setItems(page.items);
      setCursor(page.next_cursor);
      setError(null);
    } catch (e) {
      setError(e);
    }
  };
  useResync(load, [unreadOnly]);

  const more = async () => {
    const page = await get(query(cursor));
    setItems((old) => [...old, ...page.items.filter((n) => !old.some((o) => o.id === n.id))]);
    setCursor(page.next_cursor);
  };

  const replace = (changed) => setItems((old) => old && old.map((o) => (o.id === changed.id ? changed : o)));
  const markRead = async (item) => replace(await post(`/notifications/${item.id}/read`));
  const markAll = async () => {
    const result = await post("/notifications/read-all");
    toast({ level: "success", title: `Marked ${result.marked} read` });
  };

  useLive("notification", (item) =>
    setItems((old) => (old && !old.some((o) => o.id === item.id) ? [item, ...old] : old)),
  );
  useLive("notification_update", (frame) =>
    setItems((old) => {
      if (!old) return old;
      if (frame.id) {
        if (frame.deleted) return old.filter((o) => o.id !== frame.id);
        return old.map((o) => (o.id === frame.id ? { ...o, read_at: frame.read_at } : o));
      }
      // Without an id: every one up to up_to_seq was read (or the read ones cleared).
      const upTo = frame.up_to_seq ?? Infinity;
      if (frame.deleted) return old.filter((o) => !(o.read_at && o.seq <= upTo));
      const now = new Date().toISOString();
      return old.map((o) => (!o.read_at && o.seq <= upTo ? { ...o, read_at: now } : o));
    }),
  );

  return html`<section class="page">
    <div class="page-head">
      <h1>Notifications</h1>
      <div class="row">
        <label class="check">
          <input type="checkbox" checked=${unreadOnly} onChange=${(e) => setUnreadOnly(e.target.checked)} />
          Unread only
        </label>
        <${ActionButton} action=${markAll} kind="primary">Mark all read</${ActionButton}>
      </div>
    </div>
    <${Trouble} error=${error} retry=${load} stale=${Boolean(items)} />
    ${!items && !error && html`<${Loading} />`}
    ${items && items.length === 0 && html`<p class="muted">Nothing here yet.</p>`}
    ${items &&
    html`<ul class="inbox" aria-label="Notifications, newest first">
      ${items.map((item) => html`<${Item} key=${item.id} item=${item} markRead=${markRead} />`)}
    </ul>`}
    ${cursor && html`<${ActionButton} action=${more}>Load older</${ActionButton}>`}
  </section>`;
}
