// The WebSocket client of /ws (docs/websocket.md): one socket per page,
// reconnected with backoff and `after_seq` (the last seq seen) so nothing is missed
// while offline, server pings answered, lot topics re-subscribed after every reconnect.
//
// Listeners: on("state" | "hello" | "resynced" | "notification" | "unread_count" |
// "notification_update" | "slot_update" | "unauthorized", fn). "resynced" fires after a
// reconnect: whatever a page shows may have changed meanwhile, so it fetches again.

const PING_EVERY_MS = 20000; // our own pings: their pongs prove the socket is alive
const SILENCE_LIMIT_MS = 45000; // nothing heard for this long: the socket is dead
const BACKOFF_MIN_MS = 500;
const BACKOFF_MAX_MS = 15000;
const ACKS_PER_TICK = 2; // acks are paced (10 per second) to stay under the rate limit
const ACK_TICK_MS = 200;
const SEEN_KEEP = 500;

export class Live {
  constructor(token) {
    this.token = token;
    this.state = "connecting"; // connecting | live | reconnecting | offline | closed
    this.listeners = new Map();
    this.topics = new Map(); // topic -> number of components watching it
    this.lastSeq = null; // highest notification seq seen; null before the first hello
    this.seen = new Set(); // recent seqs, so one delivered twice shows once
    this.acks = [];
    this.greeted = false; // a hello arrived on some earlier socket
    this.attempts = 0;
    this.ws = null;
    this.timers = {};
    this.onOnline = () => this.reconnectNow();
    this.onVisible = () => {
      if (document.visibilityState === "visible") this.reconnectNow();
    };
    window.addEventListener("online", this.onOnline);
    document.addEventListener("visibilitychange", this.onVisible);
    this.timers.ack = setInterval(() => this.flushAcks(), ACK_TICK_MS);
    this.connect();
  }

  on(type, fn) {
    if (!this.listeners.has(type)) this.listeners.set(type, new Set());
    this.listeners.get(type).add(fn);
    return () => this.listeners.get(type).delete(fn);
  }

  emit(type, value) {
    for (const fn of this.listeners.get(type) || []) {
      try {
        fn(value);
      } catch (error) {
        console.error(`live ${type} listener failed`, error);
      }
    }
  }

  setState(state) {
    if (this.state !== state) {
      this.state = state;
      this.emit("state", state);
    }
  }

  connect() {
    if (this.state === "closed") return;
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    let url = `${scheme}//${location.host}/ws?token=${encodeURIComponent(this.token)}`;
    // On a reconnect, ask for what was missed in the URL: the server replays it right
    // after hello and before any live frame, so there is no window for a gap.
    if (this.lastSeq !== null) url += `&after_seq=${this.lastSeq}`;
    const ws = new WebSocket(url);
    this.ws = ws;
    this.lastHeard = performance.now();
    ws.onmessage = (event) => this.receive(event.data);
    ws.onclose = (event) => this.closed(ws, event);
    ws.onerror = () => {}; // onclose follows and decides what to do
    clearInterval(this.timers.ping);
    this.timers.ping = setInterval(() => this.heartbeat(), PING_EVERY_MS);
  }

  send(frame) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify(frame));
      return true;
    }
    return false;
  }

  heartbeat() {
    if (performance.now() - this.lastHeard > SILENCE_LIMIT_MS) {
      // A half-open connection (laptop slept, network changed) may never report a close.
      this.ws.close();
      this.closed(this.ws, { code: 1006 });
      return;
    }
    this.send({ type: "ping" });
  }

  receive(raw) {
    this.lastHeard = performance.now();
    let frame;
    try {
      frame = JSON.parse(raw);
    } catch {
      return;
    }
    switch (frame.type) {
      case "hello":
        return this.hello(frame);
      case "ping":
        return void this.send({ type: "pong" }); // the server closes sockets that do not answer
      case "pong":
        return;
      case "notification":
        this.notification(frame.notification);
        // A live notification carries the unread count after it, instead of a second frame.
        if (frame.unread_count != null) {
          this.emit("unread_count", { type: "unread_count", count: frame.unread_count });
        }
        return;
      case "error":
        console.warn("live error frame", frame.code, frame.detail);
        return this.emit("error", frame);
      default:
        return this.emit(frame.type, frame);
    }
  }

  hello(frame) {
    const reconnected = this.greeted;
    this.greeted = true;
    this.attempts = 0;
    if (this.lastSeq === null) {
      // First socket of this page: the inbox and the bell show the past; toasts are
      // for what happens from now on.
      this.lastSeq = frame.last_seq;
    }
    for (const topic of this.topics.keys()) this.send({ type: "subscribe", topic });
    this.setState("live");
    this.emit("hello", frame);
    this.emit("unread_count", { type: "unread_count", count: frame.unread_count });
    if (reconnected) this.emit("resynced", frame);
  }

  notification(item) {
    // The server sends each seq once per socket; across sockets (a reconnect racing a
    // frame in flight) the same seq could come again: show it once.
    if (this.seen.has(item.seq) || (this.lastSeq !== null && item.seq <= this.lastSeq - SEEN_KEEP)) {
      return;
    }
    this.seen.add(item.seq);
    if (this.seen.size > SEEN_KEEP) this.seen.delete(this.seen.values().next().value);
    this.lastSeq = Math.max(this.lastSeq ?? 0, item.seq);
    this.acks.push(item.seq);
    this.emit("notification", item);
  }

  flushAcks() {
    for (let i = 0; i < ACKS_PER_TICK && this.acks.length; i++) {
      if (!this.send({ type: "ack", seq: this.acks[0] })) return;
      this.acks.shift();
    }
  }

  closed(ws, event) {
    if (ws !== this.ws || this.state === "closed") return; // an older socket
    this.ws = null;
    clearInterval(this.timers.ping);
    if (event.code === 4401) {
      // The token is bad or expired: reconnecting cannot help.
      this.close();
      this.emit("unauthorized", event);
      return;
    }
    this.setState(navigator.onLine === false ? "offline" : "reconnecting");
    // Exponential backoff with jitter, so a restarted server is not hit by every client
    // at the same instant.
    const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** this.attempts);
    this.attempts += 1;
    clearTimeout(this.timers.retry);
    this.timers.retry = setTimeout(() => this.connect(), ceiling / 2 + (Math.random() * ceiling) / 2);
  }

  /** Coming back online or to the tab: try at once instead of waiting out the backoff. */
  reconnectNow() {
    if (this.ws === null && this.state !== "closed") {
      clearTimeout(this.timers.retry);
      this.connect();
    }
  }

  subscribe(topic) {
    const n = this.topics.get(topic) || 0;
    this.topics.set(topic, n + 1);
    if (n === 0) this.send({ type: "subscribe", topic });
  }

  unsubscribe(topic) {
    const n = this.topics.get(topic) || 0;
    if (n <= 1) {
      this.topics.delete(topic);
      this.send({ type: "unsubscribe", topic });
    } else {
      this.topics.set(topic, n - 1);
    }
  }

  close() {
    this.setState("closed");
    for (const timer of Object.values(this.timers)) {
      clearInterval(timer);
      clearTimeout(timer);
    }
    window.removeEventListener("online", this.onOnline);
    document.removeEventListener("visibilitychange", this.onVisible);
    if (this.ws) this.ws.close(1000);
    this.ws = null;
  }
}
