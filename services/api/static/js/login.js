// Log in and register. In `parkmate dev` the demo accounts are offered as buttons.
import { useState } from "preact/hooks";
import { post } from "./api.js";
import { html } from "./html.js";
import { ActionButton, Field, formValues } from "./ui.js";

function config() {
  const node = document.getElementById("parkmate-config");
  try {
    return node ? JSON.parse(node.textContent) : {};
  } catch {
    return {};
  }
}

function Form({ onSubmit, submit, children }) {
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const handle = async (event) => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await onSubmit(formValues(event.target));
    } catch (e) {
      setError(e.message);
      setBusy(false);
    }
  };
  return html`<form class="card stack" onSubmit=${handle}>
    ${children}
    ${error && html`<p class="form-error" role="alert">${error}</p>`}
    <button class="btn btn-primary" type="submit" disabled=${busy}>${submit}</button>
  </form>`;
}

export function Login({ onToken, notice }) {
  const [registering, setRegistering] = useState(location.hash === "#/register");
  const { demo_accounts: demo = [], demo_password: demoPassword } = config();

  const login = async ({ email, password }) => onToken(await post("/auth/login", { email, password }));
  const register = async ({ full_name, email, password }) => {
    await post("/auth/register", { full_name, email, password });
    await login({ email, password });
  };

  return html`<main class="login">
    <h1 class="brand-big">Parkmate</h1>
    <p class="muted">Book a parking slot, watch its clock, hear when it ends.</p>
    ${notice && html`<p class="notice" role="status">${notice}</p>`}
    ${registering
      ? html`<${Form} onSubmit=${register} submit="Create account">
          <h2>Create an account</h2>
          <${Field} label="Full name"><input name="full_name" autocomplete="name" required maxlength="200" /></${Field}>
          <${Field} label="Email"><input name="email" type="email" autocomplete="email" required maxlength="254" /></${Field}>
          <${Field} label="Password" hint="At least 8 characters">
            <input name="password" type="password" autocomplete="new-password" minlength="8" maxlength="256" required />
          </${Field}>
        </${Form}>
        <p>Have an account? <a href="#/login" onClick=${() => setRegistering(false)}>Log in</a></p>`
      : html`<${Form} onSubmit=${login} submit="Log in">
          <h2>Log in</h2>
          <${Field} label="Email"><input name="email" type="email" autocomplete="username" required maxlength="254" /></${Field}>
          <${Field} label="Password">
            <input name="password" type="password" autocomplete="current-password" maxlength="256" required />
          </${Field}>
        </${Form}>
        <p>New here? <a href="#/register" onClick=${() => setRegistering(true)}>Create an account</a></p>`}
    ${demo.length > 0 &&
    html`<section class="card demo" aria-labelledby="demo-title">
      <h2 id="demo-title">Log in with a demo account</h2>
      <p class="muted small">Seeded by <code>parkmate dev</code>; the password is <code>${demoPassword}</code>.</p>
      <div class="row wrap">
        ${demo.map(
          (email) => html`<${ActionButton}
            action=${() => login({ email, password: demoPassword })}
            label=${`Log in as ${email}`}
          >
            ${email.split("@")[0]}
          </${ActionButton}>`,
        )}
      </div>
    </section>`}
  </main>`;
}
