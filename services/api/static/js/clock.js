// Countdowns whose truth is the server's `remaining_seconds`, never the browser's clock:
// a sync stores the server's number with the performance.now() of its arrival, and
// between syncs only the elapsed monotonic time is subtracted (a wrong or changed
// system clock cannot move it; sleeping tabs are corrected by the next sync).

export class Countdown {
  constructor(remainingSeconds = 0) {
    this.sync(remainingSeconds);
  }

  sync(remainingSeconds) {
    // The server rounds up whole seconds while time remains, so the true value lies in
    // (r - 1, r]: anchor on the middle, at most half a second off either way.
    this.base = remainingSeconds > 0 ? remainingSeconds - 0.5 : 0;
    this.at = performance.now();
  }

  /** Seconds left (fractional), never below zero. */
  remaining() {
    return Math.max(0, this.base - (performance.now() - this.at) / 1000);
  }
}

/** "HH:MM:SS" of a number of seconds, rounded up (0.2 s left still shows 00:00:01). */
export function hms(seconds) {
  const total = Math.max(0, Math.ceil(seconds));
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  return [h, m, s].map((n) => String(n).padStart(2, "0")).join(":");
}
