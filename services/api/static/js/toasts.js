// Toasts: live notifications as they happen, coloured by level, stacked newest on top,
// gone after about 4 s (paused while a mouse or the focus is on one) or when dismissed.
// The region is aria-live, so screen readers announce each one; warnings and errors
// use role="alert" to interrupt.
import { useEffect, useRef } from "preact/hooks";
import { html } from "./html.js";

export const TOAST_MS = 4000;
export const MAX_TOASTS = 5;

function Toast({ toast, dismiss }) {
  const timer = useRef(null);
  const start = () => {
    clearTimeout(timer.current);
    timer.current = setTimeout(() => dismiss(toast.id), TOAST_MS);
  };
  const pause = () => clearTimeout(timer.current);
  useEffect(() => {
    start();
    return pause;
  }, []);
  const urgent = toast.level === "error" || toast.level === "warning";
  return html`<div
    class=${`toast toast-${toast.level}`}
    role=${urgent ? "alert" : "status"}
    data-type=${toast.type || ""}
    onPointerEnter=${(e) => e.pointerType === "mouse" && pause()}
    onPointerLeave=${(e) => e.pointerType === "mouse" && start()}
    onfocusin=${pause}
    onfocusout=${start}
  >
    <div class="toast-text">
      <strong class="toast-title">${toast.title}</strong>
      ${toast.body && html`<span class="toast-body">${toast.body}</span>`}
      ${toast.href && html`<a class="toast-link" href=${toast.href}>Open</a>`}
    </div>
    <button class="toast-close" aria-label="Dismiss" onClick=${() => dismiss(toast.id)}>×</button>
  </div>`;
}

export function Toasts({ toasts, dismiss }) {
  return html`<section class="toasts" aria-label="Notifications as they happen" aria-live="polite">
    ${toasts.map((t) => html`<${Toast} key=${t.id} toast=${t} dismiss=${dismiss} />`)}
  </section>`;
}
