// How values look on the page.

export function money(value) {
  if (!value) return "";
  const amount = Number(value.amount);
  try {
    return new Intl.NumberFormat(undefined, { style: "currency", currency: value.currency }).format(
      amount,
    );
  } catch {
    return `${value.amount} ${value.currency}`;
  }
}

export function time(iso) {
  if (!iso) return "";
  return new Date(iso).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

export function dateTime(iso) {
  if (!iso) return "";
  return new Date(iso).toLocaleString([], {
    month: "short",
    day: "numeric",
    hour: "2-digit",
    minute: "2-digit",
    second: "2-digit",
  });
}

export function duration(seconds) {
  if (seconds % 3600 === 0) return `${seconds / 3600} h`;
  if (seconds % 60 === 0) return `${seconds / 60} min`;
  return `${seconds} s`;
}

/** A short id for people to compare: the last 8 characters of a UUID (UUIDv7 ids share
 * their first characters, the time). */
export function shortId(id) {
  return id ? id.slice(-8) : "";
}
