// Small building blocks shared by the pages.
import { cloneElement, toChildArray } from "preact";
import { useMemo, useState } from "preact/hooks";
import { useApp } from "./context.js";
import { html } from "./html.js";

/**
 * A button running an async action: disabled while it runs (no double booking by a
 * double click), the server's error shown as an error toast.
 */
export function ActionButton({ action, kind = "secondary", children, label, disabled, type = "button" }) {
  const { toast } = useApp();
  const [busy, setBusy] = useState(false);
  const click = async (event) => {
    event.preventDefault();
    setBusy(true);
    try {
      await action();
    } catch (error) {
      toast({ level: "error", title: "That did not work", body: error.message });
    } finally {
      setBusy(false);
    }
  };
  return html`<button
    type=${type}
    class=${`btn btn-${kind}`}
    onClick=${click}
    disabled=${busy || disabled}
    aria-busy=${busy ? "true" : "false"}
    aria-label=${label}
  >
    ${children}
  </button>`;
}

let fieldIds = 0;

/**
 * A labelled form control. The label points at the control by id (rather than wrapping
 * it), so the control's accessible name is the label alone, not the label plus a
 * select's current option; the hint is tied to it with aria-describedby.
 */
export function Field({ label, hint, children }) {
  const id = useMemo(() => `field-${++fieldIds}`, []);
  const [first, ...rest] = toChildArray(children);
  const control = cloneElement(first, { id, "aria-describedby": hint ? `${id}-hint` : undefined });
  return html`<div class="field">
    <label class="field-label" for=${id}>${label}</label>
    ${control}${rest}
    ${hint && html`<span class="field-hint" id=${`${id}-hint`}>${hint}</span>`}
  </div>`;
}

export function Badge({ value, tone }) {
  return html`<span class=${`badge badge-${tone || value}`}>${String(value).replace("_", " ")}</span>`;
}

export function Loading({ what = "Loading" }) {
  return html`<p class="muted" role="status">${what}…</p>`;
}

/**
 * A failed load: the error in place of the content when there is none yet; when there
 * is (a re-sync failed, say while the server restarts), a note above what is shown.
 */
export function Trouble({ error, retry, stale }) {
  if (!error) return null;
  if (!stale) return html`<${Problem} error=${error} retry=${retry} />`;
  return html`<p class="stale" role="status">
    Could not refresh (${error.message}); showing what was last loaded.
    <button class="btn btn-link" onClick=${retry}>Retry</button>
  </p>`;
}

export function Problem({ error, retry }) {
  return html`<div class="problem" role="alert">
    <p>${error.message}</p>
    ${retry && html`<button class="btn btn-secondary" onClick=${retry}>Try again</button>`}
  </div>`;
}

/** Read a form's fields into an object (empty strings left out). */
export function formValues(form) {
  const out = {};
  for (const [key, value] of new FormData(form)) {
    if (value !== "") out[key] = value;
  }
  return out;
}
