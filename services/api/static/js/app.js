// The page's frame: the session (token kept in localStorage), the live socket, the
// header with navigation, bell and connection indicator, toasts, and the routes.
import { useEffect, useMemo, useState } from "preact/hooks";
import { AdminPage } from "./admin.js";
import { get, setToken, setUnauthorizedHandler } from "./api.js";
import { BookingPage } from "./booking.js";
import { BookingsPage } from "./bookings.js";
import { AppContext, useApp } from "./context.js";
import { Dashboard } from "./dashboard.js";
import { html } from "./html.js";
import { Live } from "./live.js";
import { LotPage } from "./lot.js";
import { LotsPage } from "./lots.js";
import { Login } from "./login.js";
import { Bell, NotificationCenter, notificationHref } from "./notifications.js";
import { navigate, useRoute } from "./router.js";
import { MAX_TOASTS, Toasts } from "./toasts.js";

const SESSION_KEY = "parkmate.session";
let toastIds = 0;

function savedSession() {
  try {
    return JSON.parse(localStorage.getItem(SESSION_KEY));
  } catch {
    return null;
  }
}

const has = (user, ...roles) => roles.some((r) => user.roles.includes(r));

function home(user) {
  if (has(user, "driver")) return "#/lots";
  if (has(user, "owner", "employee")) return "#/dashboard";
  return "#/admin";
}

const CONNECTION_TEXT = {
  connecting: "Connecting…",
  live: "Live",
  reconnecting: "Reconnecting…",
  offline: "Offline",
  closed: "Disconnected",
};

function Header({ state, unread, logout }) {
  const { user } = useApp();
  const [route] = useRoute();
  const link = (hash, text) =>
    html`<a href=${hash} aria-current=${route === hash.slice(2) ? "page" : undefined}>${text}</a>`;
  return html`<header class="top">
    <a class="brand" href=${home(user)}>Parkmate</a>
    <nav aria-label="Main">
      ${has(user, "driver", "admin") && link("#/lots", "Lots")}
      ${has(user, "driver") && link("#/bookings", "Bookings")}
      ${has(user, "owner", "employee", "admin") && link("#/dashboard", "Dashboard")}
      ${has(user, "admin") && link("#/admin", "Admin")}
    </nav>
    <div class="top-right">
      <span class=${`conn conn-${state}`} role="status" aria-live="polite" title="Live updates">
        <span class="conn-dot" aria-hidden="true"></span><span class="conn-text">${CONNECTION_TEXT[state]}</span>
      </span>
      <${Bell} count=${unread} />
      <span class="who" title=${user.email}>${user.full_name}</span>
      <button class="btn btn-link" onClick=${logout}>Log out</button>
    </div>
  </header>`;
}

function Routes() {
  const { user } = useApp();
  const [page, id] = useRoute();
  useEffect(() => {
    if (!page || page === "login" || page === "register") navigate(home(user));
  }, [page]);
  if (page === "lots" && id) return html`<${LotPage} key=${id} id=${id} />`;
  if (page === "lots") return html`<${LotsPage} />`;
  if (page === "bookings" && id) return html`<${BookingPage} key=${id} id=${id} />`;
  if (page === "bookings") return html`<${BookingsPage} />`;
  if (page === "dashboard" && has(user, "owner", "employee", "admin")) return html`<${Dashboard} />`;
  if (page === "admin" && has(user, "admin")) return html`<${AdminPage} />`;
  if (page === "notifications") return html`<${NotificationCenter} />`;
  if (!page) return null;
  return html`<section class="page"><h1>Not found</h1><p><a href=${home(user)}>Go home</a></p></section>`;
}

function Signed({ session, toast, logout }) {
  const live = useMemo(() => new Live(session.token), [session.token]);
  const [state, setState] = useState(live.state);
  const [unread, setUnread] = useState(0);
  useEffect(() => {
    const offs = [
      live.on("state", setState),
      live.on("unread_count", (frame) => setUnread(frame.count)),
      live.on("notification", (n) =>
        toast({ level: n.level, title: n.title, body: n.body, type: n.type, href: notificationHref(n) }),
      ),
      live.on("unauthorized", () => logout("Your session has ended; log in again.")),
    ];
    get("/me").catch(() => {}); // a stale saved token: the 401 handler logs out
    return () => {
      offs.forEach((off) => off());
      live.close();
    };
  }, [live]);
  useEffect(() => {
    document.title = unread ? `(${unread}) Parkmate` : "Parkmate";
  }, [unread]);
  const context = useMemo(() => ({ user: session.user, live, toast, logout }), [session, live]);
  return html`<${AppContext.Provider} value=${context}>
    <${Header} state=${state} unread=${unread} logout=${() => logout()} />
    <main id="main"><${Routes} /></main>
  </${AppContext.Provider}>`;
}

export function App() {
  const [session, setSession] = useState(savedSession);
  const [notice, setNotice] = useState(null);
  const [toasts, setToasts] = useState([]);
  const toast = useMemo(
    () => (t) => setToasts((old) => [{ ...t, id: ++toastIds }, ...old].slice(0, MAX_TOASTS)),
    [],
  );
  const dismiss = (id) => setToasts((old) => old.filter((t) => t.id !== id));

  const logout = (why = null) => {
    localStorage.removeItem(SESSION_KEY);
    setToken(null);
    setSession(null);
    setNotice(why);
    navigate("#/login");
  };
  setToken(session ? session.token : null);
  setUnauthorizedHandler(() => logout("Your session has ended; log in again."));

  const signedIn = async (answer) => {
    setToken(answer.access_token);
    const user = await get("/me");
    const next = { token: answer.access_token, user };
    localStorage.setItem(SESSION_KEY, JSON.stringify(next));
    setNotice(null);
    setSession(next);
    navigate(home(user));
  };

  return html`
    ${session
      ? html`<${Signed} key=${session.token} session=${session} toast=${toast} logout=${logout} />`
      : html`<${AppContext.Provider} value=${{ user: null, live: null, toast, logout }}>
          <${Login} onToken=${signedIn} notice=${notice} />
        </${AppContext.Provider}>`}
    <${Toasts} toasts=${toasts} dismiss=${dismiss} />
  `;
}
