// The HTTP client of /api/v1 (docs/contract.md): bearer token, JSON in and out, the
// server's error `detail` as the message a person sees.

export class ApiError extends Error {
  constructor(status, detail, extra) {
    super(detail || `HTTP ${status}`);
    this.status = status;
    this.extra = extra || {};
  }
}

let token = null;
let onUnauthorized = () => {};
// The server's clock as read from the Date header of its last answer (1 s resolution),
// anchored on performance.now(): only for coarse checks such as a renewal's grace period.
let serverClock = null;

export function setToken(value) {
  token = value;
}

export function setUnauthorizedHandler(fn) {
  onUnauthorized = fn;
}

/** Milliseconds since the epoch by the server's clock, or null before any answer. */
export function serverNow() {
  if (!serverClock) return null;
  return serverClock.ms + (performance.now() - serverClock.at);
}

// A random Idempotency-Key. crypto.randomUUID exists only in secure contexts; a page
// opened over plain HTTP on a LAN address still has getRandomValues.
function newKey() {
  if (crypto.randomUUID) return crypto.randomUUID();
  return Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) =>
    b.toString(16).padStart(2, "0"),
  ).join("");
}

async function send(method, path, body, key) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (token) headers.Authorization = `Bearer ${token}`;
  if (key) headers["Idempotency-Key"] = key;
  return fetch(`/api/v1${path}`, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
}

/**
 * Call the API; resolve with the JSON answer (null for 204), reject with ApiError.
 * Every POST carries an Idempotency-Key, so the one automatic retry after a network
 * failure cannot book or renew twice.
 */
export async function api(method, path, body) {
  const key = method === "POST" ? newKey() : null;
  let response;
  try {
    response = await send(method, path, body, key);
  } catch {
    await new Promise((resolve) => setTimeout(resolve, 500));
    try {
      response = await send(method, path, body, key);
    } catch {
      throw new ApiError(0, "The server cannot be reached; check your connection and try again.");
    }
  }
  const date = Date.parse(response.headers.get("date") || "");
  if (!Number.isNaN(date)) serverClock = { ms: date + 500, at: performance.now() };
  if (response.status === 204) return null;
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (!response.ok) {
    if (response.status === 401 && token) onUnauthorized();
    throw new ApiError(response.status, data && data.detail, data && data.extra);
  }
  return data;
}

export const get = (path) => api("GET", path);
export const post = (path, body) => api("POST", path, body);
export const put = (path, body) => api("PUT", path, body);
export const del = (path) => api("DELETE", path);

/** Every item of a paginated list (`{items, next_cursor}`), following the cursors. */
export async function getAll(path, limit = 200) {
  const items = [];
  let cursor = null;
  do {
    const sep = path.includes("?") ? "&" : "?";
    const query = `${sep}limit=${limit}` + (cursor ? `&cursor=${encodeURIComponent(cursor)}` : "");
    const page = await get(path + query);
    items.push(...page.items);
    cursor = page.next_cursor;
  } while (cursor);
  return items;
}
